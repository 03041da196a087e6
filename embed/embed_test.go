package embed

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// generic hides an image's concrete type so boxShrink takes its slow, obviously right path.
type generic struct{ image.Image }

// randomYCbCr is a 4:2:0 image with noisy luma kept clear of clamping and smoothly varying
// chroma, as in photos (per-sample random chroma would make the sub-pixel offset between
// luma and chroma cells dominate the comparison).
func randomYCbCr(r *rand.Rand, w, h int) *image.YCbCr {
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for i := range img.Y {
		img.Y[i] = uint8(60 + r.Intn(136))
	}
	cw := (w + 1) / 2
	for i := range img.Cb {
		x, y := i%cw, i/cw
		img.Cb[i] = uint8(100 + (x*56)/cw)
		img.Cr[i] = uint8(100 + (y*56)/((h+1)/2))
	}
	return img
}

func TestBoxShrinkFastPathsMatchGeneric(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	ycc := randomYCbCr(r, 999, 701)
	rgba := image.NewRGBA(image.Rect(0, 0, 640, 480))
	r.Read(rgba.Pix)
	for i := 3; i < len(rgba.Pix); i += 4 {
		rgba.Pix[i] = 255
	}
	gray := image.NewGray(image.Rect(0, 0, 500, 333))
	r.Read(gray.Pix)
	for _, img := range []image.Image{ycc, rgba, gray} {
		b := img.Bounds()
		ow, oh := b.Dx()/3, b.Dy()/3
		fast, slow := boxShrink(img, ow, oh), boxShrink(generic{img}, ow, oh)
		worst := 0
		for i := range fast.Pix {
			worst = max(worst, absInt(int(fast.Pix[i])-int(slow.Pix[i])))
		}
		// YCbCr: averaging before or after the colour conversion differs by rounding and
		// clamping only, and chroma cells align with luma cells to within a pixel.
		if worst > 6 {
			t.Errorf("%T: fast and generic paths differ by %d levels", img, worst)
		}
	}
	if got := shrinkFactor(4000, 3000, 224, 224); got != 6 {
		t.Errorf("shrinkFactor(4000x3000) = %d, want 6", got)
	}
	if got := shrinkFactor(481, 321, 224, 224); got != 1 {
		t.Errorf("shrinkFactor(481x321) = %d, want 1", got)
	}
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestPooling(t *testing.T) {
	fm := FeatureMap{H: 2, W: 2, C: 2, Data: []float32{1, -1, 3, 0, 5, 2, 7, 1}}
	if got := PoolMean(fm); got[0] != 4 || got[1] != 0.5 {
		t.Errorf("mean %v", got)
	}
	if got := PoolMax(fm); got[0] != 7 || got[1] != 2 {
		t.Errorf("max %v", got)
	}
	g := PoolGeM(fm, 3)
	want := math.Cbrt((1 + 27 + 125 + 343) / 4.0)
	if math.Abs(float64(g[0])-want) > 1e-4 {
		t.Errorf("gem %v, want %v", g[0], want)
	}
	if g1 := PoolGeM(fm, 1); math.Abs(float64(g1[0])-4) > 1e-5 {
		t.Errorf("gem p=1 %v, want the mean", g1[0])
	}
	cells := GridCells(FeatureMap{H: 5, W: 4, C: 1, Data: []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}}, 2)
	if len(cells) != 4 || cells[0].H != 2 || cells[2].H != 3 || cells[3].Data[0] != 10 {
		t.Errorf("grid cells %+v", cells)
	}
	v := Normalize([]float32{3, 4})
	if v[0] != 0.6 || v[1] != 0.8 || Cosine(v, v) < 0.9999 {
		t.Errorf("normalize %v", v)
	}
}

// photo draws a deterministic scene: shapes on a gradient (different seeds, different scenes).
func photo(seed int64, w, h int) *image.RGBA {
	r := rand.New(rand.NewSource(seed))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	c0 := [3]float64{r.Float64() * 255, r.Float64() * 255, r.Float64() * 255}
	c1 := [3]float64{r.Float64() * 255, r.Float64() * 255, r.Float64() * 255}
	type disc struct {
		x, y, rad float64
		c         color.RGBA
	}
	var discs []disc
	for i := 0; i < 6; i++ {
		discs = append(discs, disc{r.Float64() * float64(w), r.Float64() * float64(h), (0.05 + r.Float64()*0.2) * float64(w),
			color.RGBA{uint8(r.Intn(256)), uint8(r.Intn(256)), uint8(r.Intn(256)), 255}})
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			t := (float64(x) + float64(y)) / float64(w+h)
			c := color.RGBA{uint8(c0[0]*(1-t) + c1[0]*t), uint8(c0[1]*(1-t) + c1[1]*t), uint8(c0[2]*(1-t) + c1[2]*t), 255}
			for _, d := range discs {
				if (float64(x)-d.x)*(float64(x)-d.x)+(float64(y)-d.y)*(float64(y)-d.y) < d.rad*d.rad {
					c = d.c
				}
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func encodeJPEG(tb testing.TB, img image.Image, q int) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: q}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func TestEmbedProperties(t *testing.T) {
	m := testModel(t)
	if !strings.HasPrefix(m.ID(), "mobilenet_v2@") || !strings.Contains(m.ID(), "/r3:") {
		t.Errorf("ID %q", m.ID())
	}
	if m.Dim() != 864 {
		t.Errorf("Dim %d, want 864", m.Dim())
	}
	a := photo(1, 640, 480)
	va, err := m.Embed(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(va) != m.Dim() {
		t.Fatalf("vector has %d dims, want %d", len(va), m.Dim())
	}
	if n := Cosine(va, va); math.Abs(float64(n)-1) > 1e-4 {
		t.Errorf("|v|^2 = %v, want 1", n)
	}
	// Concurrent calls give the same vectors as a sequential one.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := m.Embed(a)
			if err != nil {
				t.Error(err)
				return
			}
			for k := range v {
				if v[k] != va[k] {
					t.Errorf("concurrent Embed differs at %d", k)
					return
				}
			}
		}()
	}
	wg.Wait()

	// Near-duplicates (re-encoded, downscaled, brightened) score above unrelated scenes.
	e, err := EmbedFile(m, bytes.NewReader(encodeJPEG(t, a, 40)))
	if err != nil {
		t.Fatal(err)
	}
	if e.ModelID != m.Version() || e.PHash == 0 || e.DHash == 0 {
		t.Errorf("ModelID %q", e.ModelID)
	}
	small := boxShrink(a, 320, 240)
	vs, _ := m.Embed(small)
	bright := image.NewRGBA(a.Rect)
	for i, p := range a.Pix {
		bright.Pix[i] = uint8(min(255, int(p)+25))
	}
	vb, _ := m.Embed(bright)
	worstDup := min(Cosine(va, e.Vector), Cosine(va, vs), Cosine(va, vb))
	var bestOther float32 = -1
	for seed := int64(2); seed < 8; seed++ {
		vo, _ := m.Embed(photo(seed, 640, 480))
		bestOther = max(bestOther, Cosine(va, vo))
	}
	t.Logf("near-duplicates: jpeg40 %.4f, half size %.4f, brighter %.4f; best unrelated %.4f",
		Cosine(va, e.Vector), Cosine(va, vs), Cosine(va, vb), bestOther)
	if worstDup <= bestOther {
		t.Errorf("worst near-duplicate cosine %.4f not above best unrelated %.4f", worstDup, bestOther)
	}
}

func TestEmbedFileErrors(t *testing.T) {
	m := testModel(t)
	if _, err := EmbedFile(m, strings.NewReader("not an image")); err == nil {
		t.Error("garbage accepted")
	}
	if _, err := EmbedFile(m, bytes.NewReader(nil)); err == nil {
		t.Error("empty input accepted")
	}
	// A PNG header claiming 100000 x 100000 pixels is refused before any pixel is decoded.
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1)))
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b[16:], 100000)
	binary.BigEndian.PutUint32(b[20:], 100000)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	if _, err := EmbedFile(m, bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("decompression bomb: %v", err)
	}
}

func TestLocateModel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.imgfsmodel")
	os.WriteFile(p, []byte("x"), 0o600)
	t.Setenv("IMGFS_MODEL", p)
	if got, err := LocateModel("whatever"); err != nil || got != p {
		t.Errorf("LocateModel with IMGFS_MODEL: %q %v", got, err)
	}
	t.Setenv("IMGFS_MODEL", p+".missing")
	if _, err := LocateModel("whatever"); err == nil {
		t.Error("missing IMGFS_MODEL file accepted")
	}
	if _, err := Load(p); err == nil {
		t.Error("junk model file loaded")
	}
}
