package embed

import (
	"image"
	"image/color"
	"os"
	"path/filepath"
	"testing"
)

// photoLike fills r with a deterministic textured pattern (no uniform rows or columns).
func photoLike(m *image.RGBA, r image.Rectangle) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			v := uint8((x*37 + y*91 + (x*y)%53) % 256)
			m.SetRGBA(x, y, color.RGBA{v, uint8(255 - int(v)), uint8((x * 7) % 256), 255})
		}
	}
}

func fill(m *image.RGBA, r image.Rectangle, c color.RGBA) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			m.SetRGBA(x, y, c)
		}
	}
}

func TestTrimBorders(t *testing.T) {
	inner := image.Rect(30, 20, 230, 160)
	for _, c := range []struct {
		name string
		make func() *image.RGBA
		want image.Rectangle
	}{
		{"white frame", func() *image.RGBA {
			m := image.NewRGBA(image.Rect(0, 0, 260, 180))
			fill(m, m.Rect, color.RGBA{255, 255, 255, 255})
			photoLike(m, inner)
			return m
		}, inner},
		{"black letterbox with JPEG-like noise", func() *image.RGBA {
			m := image.NewRGBA(image.Rect(0, 0, 260, 180))
			photoLike(m, m.Rect)
			fill(m, image.Rect(0, 0, 260, 25), color.RGBA{3, 0, 5, 255})
			fill(m, image.Rect(0, 150, 260, 180), color.RGBA{0, 4, 0, 255})
			m.SetRGBA(100, 10, color.RGBA{200, 200, 200, 255}) // one outlier pixel
			return m
		}, image.Rect(0, 25, 260, 150)},
		{"no border", func() *image.RGBA {
			m := image.NewRGBA(image.Rect(0, 0, 260, 180))
			photoLike(m, m.Rect)
			return m
		}, image.Rect(0, 0, 260, 180)},
		{"sky gradient is not a border", func() *image.RGBA {
			m := image.NewRGBA(image.Rect(0, 0, 260, 180))
			photoLike(m, m.Rect)
			for y := 0; y < 90; y++ { // uniform rows whose colour drifts slowly
				fill(m, image.Rect(0, y, 260, y+1), color.RGBA{uint8(90 + y), uint8(140 + y/2), 230, 255})
			}
			return m
		}, image.Rect(0, 0, 260, 180)},
		{"uniform image", func() *image.RGBA {
			m := image.NewRGBA(image.Rect(0, 0, 260, 180))
			fill(m, m.Rect, color.RGBA{120, 120, 120, 255})
			return m
		}, image.Rect(0, 0, 260, 180)},
		{"offset bounds", func() *image.RGBA {
			m := image.NewRGBA(image.Rect(10, 10, 270, 190))
			fill(m, m.Rect, color.RGBA{245, 245, 220, 255})
			photoLike(m, inner.Add(image.Pt(10, 10)))
			return m
		}, inner.Add(image.Pt(10, 10))},
	} {
		if got := trimBorders(c.make()); got != c.want {
			t.Errorf("%s: trimmed to %v, want %v", c.name, got, c.want)
		}
	}
}

// TestTrimEmbedding: a framed copy embeds closer to its original with the trimming recipe.
func TestTrimEmbedding(t *testing.T) {
	testModel(t) // skips (or fails under CI) without the model file
	p := os.Getenv("IMGFS_MODEL")
	if p == "" {
		p = filepath.Join("..", "models", DefaultModelName+".imgfsmodel")
	}
	m, err := Load(p) // its own copy: SetRecipe below must not race other tests
	if err != nil {
		t.Fatal(err)
	}
	orig := image.NewRGBA(image.Rect(0, 0, 300, 200))
	photoLike(orig, orig.Rect)
	framed := image.NewRGBA(image.Rect(0, 0, 360, 240))
	fill(framed, framed.Rect, color.RGBA{255, 255, 255, 255})
	for y := 0; y < 200; y++ {
		for x := 0; x < 300; x++ {
			framed.SetRGBA(30+x, 20+y, orig.RGBAAt(x, y))
		}
	}
	score := func(trim bool) float32 {
		r := m.Recipe()
		r.Trim = trim
		if err := m.SetRecipe(r); err != nil {
			t.Fatal(err)
		}
		a, err := m.Embed(orig)
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.Embed(framed)
		if err != nil {
			t.Fatal(err)
		}
		return Cosine(a, b)
	}
	plain, trimmed := score(false), score(true)
	if trimmed < 0.99 || trimmed <= plain {
		t.Errorf("framed copy: cosine %.4f without trimming, %.4f with (want >= 0.99 and higher)", plain, trimmed)
	}
}
