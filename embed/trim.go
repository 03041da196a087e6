package embed

import (
	"image"
	"image/draw"
)

// Border trimming (recipe version 3, docs/embed.md): a copy with a frame or letterbox bars
// added shows the photo smaller and shifted in the network's input, which costs more
// similarity than any colour edit. Uniform bands along the edges are cut off before the
// resample, so the framed copy and the original feed the network nearly the same pixels.
//
// A band is a run of edge rows (or columns) whose pixels all lie within trimTol of the
// outermost line's mean colour. It must end at a line that is not uniform or whose colour
// jumps (a frame's inner edge), not fade out (a clear sky's gradient), and may take at most
// trimMaxShare of the side.
const (
	trimTol      = 24   // max per-channel distance from the band colour, of 255
	trimOutliers = 0.02 // share of a line's pixels allowed outside trimTol (JPEG ringing)
	trimMaxShare = 0.3  // at most this share of the width or height per side
	trimMinLines = 2    // shorter bands are left alone
)

// toRGBA returns img as *image.RGBA (no copy when it already is one).
func toRGBA(img image.Image) *image.RGBA {
	if m, ok := img.(*image.RGBA); ok {
		return m
	}
	b := img.Bounds()
	m := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(m, m.Bounds(), img, b.Min, draw.Src)
	return m
}

// trimBorders returns the part of m left after removing uniform bands on each side (m's
// own bounds when there are none).
func trimBorders(m *image.RGBA) image.Rectangle {
	r := m.Rect
	w, h := r.Dx(), r.Dy()
	if w < 16 || h < 16 {
		return r
	}
	top := bandDepth(m, h, int(trimMaxShare*float64(h)), func(i int) (int, int, int) {
		return m.PixOffset(r.Min.X, r.Min.Y+i), 4, w
	})
	bottom := bandDepth(m, h, int(trimMaxShare*float64(h)), func(i int) (int, int, int) {
		return m.PixOffset(r.Min.X, r.Max.Y-1-i), 4, w
	})
	left := bandDepth(m, w, int(trimMaxShare*float64(w)), func(i int) (int, int, int) {
		return m.PixOffset(r.Min.X+i, r.Min.Y), m.Stride, h
	})
	right := bandDepth(m, w, int(trimMaxShare*float64(w)), func(i int) (int, int, int) {
		return m.PixOffset(r.Max.X-1-i, r.Min.Y), m.Stride, h
	})
	return image.Rect(r.Min.X+left, r.Min.Y+top, r.Max.X-right, r.Max.Y-bottom)
}

// bandDepth counts the uniform lines from one edge inward (0 when they do not form a band).
// line(i) gives the i-th line's first pixel offset, the step between its pixels and its length.
func bandDepth(m *image.RGBA, size, limit int, line func(i int) (off, step, n int)) int {
	off, step, n := line(0)
	ref, ok := lineColour(m, off, step, n)
	if !ok {
		return 0
	}
	d := 1
	for d < limit {
		off, step, n = line(d)
		if !lineWithin(m, off, step, n, ref) {
			break
		}
		d++
	}
	if d < trimMinLines || d >= limit {
		return 0
	}
	// The band must end in an edge: the next line is not uniform, or uniform in a clearly
	// different colour. A colour that only drifted past trimTol is a gradient, not a frame.
	off, step, n = line(d)
	if c, uniform := lineColour(m, off, step, n); uniform && colourDist(c, ref) < 3*trimTol {
		return 0
	}
	return d
}

// lineColour returns the line's mean colour and whether the line is uniform around it.
func lineColour(m *image.RGBA, off, step, n int) ([4]int, bool) {
	var s [4]int
	for i := 0; i < n; i++ {
		p := m.Pix[off+i*step : off+i*step+4]
		s[0] += int(p[0])
		s[1] += int(p[1])
		s[2] += int(p[2])
		s[3] += int(p[3])
	}
	c := [4]int{s[0] / n, s[1] / n, s[2] / n, s[3] / n}
	return c, lineWithin(m, off, step, n, c)
}

// lineWithin reports whether all but trimOutliers of the line's pixels are within trimTol of c.
func lineWithin(m *image.RGBA, off, step, n int, c [4]int) bool {
	bad, allowed := 0, int(trimOutliers*float64(n))
	for i := 0; i < n; i++ {
		p := m.Pix[off+i*step : off+i*step+4]
		if colourDist([4]int{int(p[0]), int(p[1]), int(p[2]), int(p[3])}, c) > trimTol {
			if bad++; bad > allowed {
				return false
			}
		}
	}
	return true
}

// colourDist is the largest per-channel difference.
func colourDist(a, b [4]int) int {
	d := 0
	for k := range a {
		d = max(d, abs(a[k]-b[k]))
	}
	return d
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
