// Package phash computes 64-bit perceptual hashes of images: pHash (low frequencies of the
// DCT of a 32x32 grey image, each bit = coefficient above the median) and dHash (sign of
// the horizontal gradient of a 9x8 grey image). Near-duplicates have hashes a small Hamming
// distance apart; they are a cheap first filter before the CNN embedding (docs/embed.md).
package phash

import (
	"image"
	"image/color"
	"math"
	"math/bits"
	"slices"
)

// Version changes whenever the hashes of an image would change.
const Version = "phash1"

// Hashes returns img's pHash and dHash.
func Hashes(img image.Image) (p, d uint64) {
	return PHash(img), DHash(img)
}

// Distance is the Hamming distance between two hashes (0..64).
func Distance(a, b uint64) int { return bits.OnesCount64(a ^ b) }

// Similarity is 1 - Distance/64: 1 for equal hashes.
func Similarity(a, b uint64) float64 { return 1 - float64(Distance(a, b))/64 }

const dctN = 32

var dctCos = func() (c [8][dctN]float64) {
	for u := 0; u < 8; u++ {
		for x := 0; x < dctN; x++ {
			c[u][x] = math.Cos(float64(2*x+1) * float64(u) * math.Pi / (2 * dctN))
		}
	}
	return c
}()

// PHash: the image is area-averaged to 32x32 luma; of its 2-D DCT-II the 8x8 lowest
// frequencies are kept; bit 8*v+u (row v, column u) is set when coefficient (u, v) is
// above the median of the 63 AC coefficients (the DC bit: mean above middle grey).
func PHash(img image.Image) uint64 {
	g := Gray(img, dctN, dctN)
	// Rows first: t[y][u] = sum_x g[y][x] cos(...).
	var t [dctN][8]float64
	for y := 0; y < dctN; y++ {
		for u := 0; u < 8; u++ {
			var s float64
			for x := 0; x < dctN; x++ {
				s += g[y*dctN+x] * dctCos[u][x]
			}
			t[y][u] = s
		}
	}
	var c [64]float64
	for v := 0; v < 8; v++ {
		for u := 0; u < 8; u++ {
			var s float64
			for y := 0; y < dctN; y++ {
				s += t[y][u] * dctCos[v][y]
			}
			c[8*v+u] = s
		}
	}
	ac := slices.Clone(c[1:])
	slices.Sort(ac)
	med := ac[31] // median of the 63 AC coefficients
	var h uint64
	if c[0]/(dctN*dctN) > 127.5 {
		h = 1
	}
	for i := 1; i < 64; i++ {
		if c[i] > med {
			h |= 1 << i
		}
	}
	return h
}

// DHash: the image is area-averaged to 9x8 luma; bit 8*y+x is set when pixel (x, y) is
// brighter than pixel (x+1, y).
func DHash(img image.Image) uint64 {
	g := Gray(img, 9, 8)
	var h uint64
	for y := 0; y < 8; y++ {
		for x := 0; x < 8; x++ {
			if g[y*9+x] > g[y*9+x+1] {
				h |= 1 << (8*y + x)
			}
		}
	}
	return h
}

// Gray area-averages img to w x h luma values in 0..255 (BT.601 weights; transparent
// pixels count as over white). Every source pixel counts once, column x in cell x*w/W and
// row y in cell y*h/H (images smaller than w x h are sampled instead).
func Gray(img image.Image, w, h int) []float64 {
	b := img.Bounds()
	W, H := b.Dx(), b.Dy()
	out := make([]float64, w*h)
	if W <= 0 || H <= 0 {
		return out
	}
	if W < w || H < h {
		// Tiny image: sample (nearest) so that every cell has at least one pixel.
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				out[y*w+x] = luma(img.At(b.Min.X+x*W/w, b.Min.Y+y*H/h))
			}
		}
		return out
	}
	colCell := make([]int, W)
	for x := range colCell {
		colCell[x] = x * w / W
	}
	counts := make([]float64, w*h)
	row := make([]float64, W)
	for y := 0; y < H; y++ {
		lumaRow(img, b.Min.Y+y, row)
		cy := y * h / H
		o, n := out[cy*w:(cy+1)*w], counts[cy*w:(cy+1)*w]
		for x, v := range row {
			o[colCell[x]] += v
			n[colCell[x]]++
		}
	}
	for i := range out {
		out[i] /= counts[i]
	}
	return out
}

func luma(c color.Color) float64 {
	r, g, b, a := c.RGBA()
	// Composite over white, then BT.601 luma, in 0..255.
	wr, wg, wb := float64(r+0xffff-a), float64(g+0xffff-a), float64(b+0xffff-a)
	return (0.299*wr + 0.587*wg + 0.114*wb) / 257
}

// lumaRow fills row with the luma of image row y (fast paths for the decoders' outputs).
func lumaRow(img image.Image, y int, row []float64) {
	b := img.Bounds()
	switch m := img.(type) {
	case *image.RGBA:
		p := m.Pix[m.PixOffset(b.Min.X, y):]
		for x := range row {
			q := p[4*x : 4*x+4]
			a := 255 - float64(q[3])
			row[x] = 0.299*(float64(q[0])+a) + 0.587*(float64(q[1])+a) + 0.114*(float64(q[2])+a)
		}
	case *image.NRGBA:
		p := m.Pix[m.PixOffset(b.Min.X, y):]
		for x := range row {
			q := p[4*x : 4*x+4]
			a := float64(q[3]) / 255
			l := 0.299*float64(q[0]) + 0.587*float64(q[1]) + 0.114*float64(q[2])
			row[x] = l*a + 255*(1-a)
		}
	case *image.Gray:
		p := m.Pix[m.PixOffset(b.Min.X, y):]
		for x := range row {
			row[x] = float64(p[x])
		}
	case *image.YCbCr:
		p := m.Y[m.YOffset(b.Min.X, y):]
		for x := range row {
			row[x] = float64(p[x])
		}
	default:
		for x := range row {
			row[x] = luma(img.At(b.Min.X+x, y))
		}
	}
}
