package phash

import (
	"image"
	"image/color"
	"math/rand"
	"testing"

	xdraw "golang.org/x/image/draw"
)

// scene: a few discs on a gradient; different seeds, different scenes.
func scene(seed int64, w, h int) *image.RGBA {
	r := rand.New(rand.NewSource(seed))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	c0, c1 := r.Intn(256), r.Intn(256)
	type disc struct{ x, y, rad, v int }
	var ds []disc
	for i := 0; i < 5; i++ {
		ds = append(ds, disc{r.Intn(w), r.Intn(h), w/12 + r.Intn(w/4), r.Intn(256)})
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := c0 + (c1-c0)*(x+y)/(w+h)
			for _, d := range ds {
				if (x-d.x)*(x-d.x)+(y-d.y)*(y-d.y) < d.rad*d.rad {
					v = d.v
				}
			}
			img.SetRGBA(x, y, color.RGBA{uint8(v), uint8(255 - v), uint8(v / 2), 255})
		}
	}
	return img
}

type generic struct{ image.Image }

func TestHashes(t *testing.T) {
	a := scene(1, 400, 300)
	pa, da := Hashes(a)
	// Fast path and the generic colour-model path agree exactly.
	if p, d := Hashes(generic{a}); p != pa || d != da {
		t.Errorf("generic path: %016x %016x, fast %016x %016x", p, d, pa, da)
	}
	// A half-size copy and a brightened copy are near; other scenes are far.
	small := image.NewRGBA(image.Rect(0, 0, 200, 150))
	xdraw.BiLinear.Scale(small, small.Rect, a, a.Rect, xdraw.Src, nil)
	bright := image.NewRGBA(a.Rect)
	for i, v := range a.Pix {
		bright.Pix[i] = uint8(min(255, int(v)+20))
	}
	for name, img := range map[string]image.Image{"half": small, "bright": bright} {
		p, d := Hashes(img)
		if Distance(p, pa) > 6 || Distance(d, da) > 8 {
			t.Errorf("%s copy: pHash distance %d, dHash distance %d", name, Distance(p, pa), Distance(d, da))
		}
	}
	sumP, sumD := 0, 0
	for s := int64(2); s < 12; s++ {
		p, d := Hashes(scene(s, 400, 300))
		sumP += Distance(p, pa)
		sumD += Distance(d, da)
	}
	if sumP/10 < 20 || sumD/10 < 16 {
		t.Errorf("unrelated scenes: mean distances pHash %d, dHash %d", sumP/10, sumD/10)
	}
	if Similarity(pa, pa) != 1 || Distance(0, ^uint64(0)) != 64 {
		t.Error("Similarity/Distance")
	}
	// Pinned values: a change here changes stored hashes, so Version must change with it.
	if pa != 0x60e17c152e8fcf50 || da != 0x30323232386c6c2c {
		t.Errorf("pHash %#016x dHash %#016x: hashes changed (bump Version)", pa, da)
	}
}

func TestTinyAndEmpty(t *testing.T) {
	one := image.NewGray(image.Rect(0, 0, 1, 1))
	Hashes(one)
	Hashes(image.NewRGBA(image.Rect(0, 0, 0, 0)))
	// A 5x3 image with a bright left half hashes like its 500x300 enlargement.
	s := image.NewGray(image.Rect(0, 0, 50, 30))
	for y := 0; y < 30; y++ {
		for x := 0; x < 25; x++ {
			s.Pix[y*50+x] = 230
		}
	}
	big := image.NewGray(image.Rect(0, 0, 500, 300))
	xdraw.NearestNeighbor.Scale(big, big.Rect, s, s.Rect, xdraw.Src, nil)
	ps, ds := Hashes(s)
	pb, db := Hashes(big)
	if Distance(ps, pb) > 2 || Distance(ds, db) > 2 {
		t.Errorf("scaled copies: %016x/%016x vs %016x/%016x", ps, ds, pb, db)
	}
}
