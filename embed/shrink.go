package embed

import (
	"image"
	"image/color"
)

// shrinkFactor is the integer box-filter reduction applied before the bilinear resample: the
// largest k that still leaves at least twice the target size on both axes (1: none). Box
// averaging a 12 MP photo first costs a few ms where resampling it directly costs ~190 ms,
// and both are area filters, so the network sees nearly the same input.
func shrinkFactor(w, h, tw, th int) int {
	return max(1, min(w/(2*tw), h/(2*th)))
}

// boxShrink averages img over a grid of ow x oh cells (cell x spans source columns
// x*W/ow to (x+1)*W/ow, so every pixel counts once). Fast paths for the decoders' usual
// outputs; premultiplied RGBA result.
func boxShrink(img image.Image, ow, oh int) *image.RGBA {
	dst := image.NewRGBA(image.Rect(0, 0, ow, oh))
	b := img.Bounds()
	switch src := img.(type) {
	case *image.YCbCr:
		cw, ch := chromaSize(src)
		y := avgPlane(src.Y, src.YStride, b.Dx(), b.Dy(), ow, oh)
		cb := avgPlane(src.Cb, src.CStride, cw, ch, ow, oh)
		cr := avgPlane(src.Cr, src.CStride, cw, ch, ow, oh)
		for i := range y {
			r, g, bl := color.YCbCrToRGB(y[i], cb[i], cr[i])
			dst.Pix[4*i], dst.Pix[4*i+1], dst.Pix[4*i+2], dst.Pix[4*i+3] = r, g, bl, 255
		}
	case *image.Gray:
		g := avgPlane(src.Pix, src.Stride, b.Dx(), b.Dy(), ow, oh)
		for i, v := range g {
			dst.Pix[4*i], dst.Pix[4*i+1], dst.Pix[4*i+2], dst.Pix[4*i+3] = v, v, v, 255
		}
	case *image.RGBA:
		avgInterleaved(src.Pix, src.Stride, 4, b.Dx(), b.Dy(), ow, oh, dst.Pix)
	default:
		// Generic path through the color model (slow, but correct for any image).
		// Same cells as the fast paths: cell i spans [i*W/n, (i+1)*W/n).
		sums := make([]uint64, 4*ow*oh)
		counts := make([]uint32, ow*oh)
		colCell := cellIndex(b.Dx(), ow)
		rowCell := cellIndex(b.Dy(), oh)
		for y := 0; y < b.Dy(); y++ {
			oy := rowCell[y]
			for x := 0; x < b.Dx(); x++ {
				ox := colCell[x]
				r, g, bl, a := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
				i := oy*ow + ox
				sums[4*i] += uint64(r)
				sums[4*i+1] += uint64(g)
				sums[4*i+2] += uint64(bl)
				sums[4*i+3] += uint64(a)
				counts[i]++
			}
		}
		for i, c := range counts {
			for k := 0; k < 4; k++ {
				// 16-bit average -> 8 bits, rounded (v*0x101 maps back to v; never overflows).
				avg := (sums[4*i+k] + uint64(c)/2) / uint64(max(c, 1))
				dst.Pix[4*i+k] = uint8((avg*255 + 32767) / 65535)
			}
		}
	}
	return dst
}

// chromaSize is the size of a YCbCr image's Cb and Cr planes.
func chromaSize(m *image.YCbCr) (int, int) {
	r := m.Rect
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		return (r.Max.X+1)/2 - r.Min.X/2, r.Dy()
	case image.YCbCrSubsampleRatio420:
		return (r.Max.X+1)/2 - r.Min.X/2, (r.Max.Y+1)/2 - r.Min.Y/2
	case image.YCbCrSubsampleRatio440:
		return r.Dx(), (r.Max.Y+1)/2 - r.Min.Y/2
	case image.YCbCrSubsampleRatio411:
		return (r.Max.X+3)/4 - r.Min.X/4, r.Dy()
	case image.YCbCrSubsampleRatio410:
		return (r.Max.X+3)/4 - r.Min.X/4, (r.Max.Y+1)/2 - r.Min.Y/2
	}
	return r.Dx(), r.Dy()
}

// cellBounds returns, for n cells over size pixels, each cell's start (len n+1).
func cellBounds(size, n int) []int {
	b := make([]int, n+1)
	for i := range b {
		b[i] = i * size / n
	}
	return b
}

// cellIndex maps each of size pixels to its cell among n cells laid out by cellBounds.
func cellIndex(size, n int) []int {
	b := cellBounds(size, n)
	idx := make([]int, size)
	for c := 0; c < n; c++ {
		for p := b[c]; p < b[c+1]; p++ {
			idx[p] = c
		}
	}
	return idx
}

// avgPlane box-averages a w x h 8-bit plane into ow x oh cells (rounded).
func avgPlane(pix []uint8, stride, w, h, ow, oh int) []uint8 {
	xb, yb := cellBounds(w, ow), cellBounds(h, oh)
	out := make([]uint8, ow*oh)
	acc := make([]uint32, ow)
	for oy := 0; oy < oh; oy++ {
		clear(acc)
		for y := yb[oy]; y < yb[oy+1]; y++ {
			row := pix[y*stride : y*stride+w]
			for ox := 0; ox < ow; ox++ {
				var s uint32
				for _, v := range row[xb[ox]:xb[ox+1]] {
					s += uint32(v)
				}
				acc[ox] += s
			}
		}
		rows := uint32(yb[oy+1] - yb[oy])
		for ox := 0; ox < ow; ox++ {
			n := rows * uint32(xb[ox+1]-xb[ox])
			out[oy*ow+ox] = uint8((acc[ox] + n/2) / max(n, 1))
		}
	}
	return out
}

// avgInterleaved box-averages an interleaved 8-bit image with c channels into dst (c=4).
func avgInterleaved(pix []uint8, stride, c, w, h, ow, oh int, dst []uint8) {
	xb, yb := cellBounds(w, ow), cellBounds(h, oh)
	acc := make([]uint32, ow*c)
	for oy := 0; oy < oh; oy++ {
		clear(acc)
		for y := yb[oy]; y < yb[oy+1]; y++ {
			row := pix[y*stride : y*stride+w*c]
			for ox := 0; ox < ow; ox++ {
				a := acc[ox*c : ox*c+c]
				for x := xb[ox]; x < xb[ox+1]; x++ {
					for k := 0; k < c; k++ {
						a[k] += uint32(row[x*c+k])
					}
				}
			}
		}
		rows := uint32(yb[oy+1] - yb[oy])
		for ox := 0; ox < ow; ox++ {
			n := rows * uint32(xb[ox+1]-xb[ox])
			for k := 0; k < c; k++ {
				dst[(oy*ow+ox)*c+k] = uint8((acc[ox*c+k] + n/2) / max(n, 1))
			}
		}
	}
}
