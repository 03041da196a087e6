package embed

import (
	"bytes"
	"image"
	"testing"

	xdraw "golang.org/x/image/draw"
)

// crop returns the r part of img, resized to w x h (an edited copy: a crop, then a resize).
func cropResize(img image.Image, r image.Rectangle, w, h int) *image.RGBA {
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	xdraw.BiLinear.Scale(dst, dst.Bounds(), img, r, xdraw.Src, nil)
	return dst
}

func mirrored(img *image.RGBA) *image.RGBA {
	b := img.Bounds()
	out := image.NewRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			out.Set(b.Max.X-1-(x-b.Min.X), y, img.At(x, y))
		}
	}
	return out
}

// TestVerify: the Local descriptors confirm a crop, a re-encoded copy and a mirrored copy
// (with the mirror descriptor); they reject unrelated
// scenes and the unmirrored descriptor of a mirrored copy.
func TestVerify(t *testing.T) {
	m := testModel(t)
	a := photo(1, 640, 480)
	emb := func(img image.Image) Embedding {
		e, err := EmbedFile(m, bytes.NewReader(encodeJPEG(t, img, 90)))
		if err != nil {
			t.Fatal(err)
		}
		if e.Local.Grid != LocalGrid || e.Local.C != 96 || len(e.Local.Cells) != LocalGrid*LocalGrid*96 || len(e.LocalMirror.Cells) != len(e.Local.Cells) {
			t.Fatalf("local descriptor %dx%d, %d cells", e.Local.Grid, e.Local.C, len(e.Local.Cells))
		}
		return e
	}
	ea := emb(a)
	p := DefaultVerify
	check := func(name string, x, y Local, want bool) {
		t.Helper()
		v, err := Verify(x, y, p)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d matches, %d inliers, scale %.2f x %.2f, shift %.2f, %.2f", name, v.Matches, v.Inliers, v.ScaleX, v.ScaleY, v.ShiftX, v.ShiftY)
		if v.Pass(p) != want {
			t.Errorf("%s: pass %v, want %v", name, v.Pass(p), want)
		}
	}
	check("itself", ea.Local, ea.Local, true)
	check("jpeg 30", ea.Local, emb(encodeAndDecode(t, a, 30)).Local, true)
	check("crop", ea.Local, emb(cropResize(a, image.Rect(160, 96, 640, 480), 480, 384)).Local, true)
	em := emb(mirrored(a))
	check("mirror, mirror descriptor", ea.LocalMirror, em.Local, true)
	check("mirror, plain descriptor", ea.Local, em.Local, false)
	for seed := int64(2); seed < 6; seed++ {
		eo := emb(photo(seed, 640, 480))
		check("unrelated", ea.Local, eo.Local, false)
		// VerifyEmbeddings does not depend on the order of the two photos.
		v1, err1 := VerifyEmbeddings(ea, eo, p)
		v2, err2 := VerifyEmbeddings(eo, ea, p)
		if err1 != nil || err2 != nil || v1.Inliers != v2.Inliers || v1.Pass(p) {
			t.Errorf("VerifyEmbeddings: %d inliers one way, %d the other (%v, %v)", v1.Inliers, v2.Inliers, err1, err2)
		}
	}
	if v, err := VerifyEmbeddings(em, ea, p); err != nil || !v.Pass(p) {
		t.Errorf("VerifyEmbeddings of a mirrored copy: %+v, %v", v, err)
	}
	if _, err := Verify(ea.Local, Local{Grid: 3, C: 96, Cells: make([]int8, 9*96)}, p); err == nil {
		t.Error("descriptors of different shapes compared")
	}
}

func encodeAndDecode(t *testing.T, img image.Image, q int) image.Image {
	d, err := DecodeImage(bytes.NewReader(encodeJPEG(t, img, q)))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// BenchmarkVerify: one verification of two 7x7x96 descriptors (docs/similar.md gives the
// cost per candidate pair).
func BenchmarkVerify(b *testing.B) {
	fm := func(seed int64) FeatureMap {
		img := photo(seed, 14, 14)
		f := FeatureMap{H: 14, W: 14, C: 96, Data: make([]float32, 14*14*96)}
		for i := range f.Data {
			f.Data[i] = float32(img.Pix[(i/96)*4+i%3]) * float32(1+i%7)
		}
		return f
	}
	x, y := LocalOf(fm(1), LocalGrid), LocalOf(fm(2), LocalGrid)
	for i := 0; i < b.N; i++ {
		Verify(x, y, DefaultVerify)
	}
}
