package imgdecode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
)

// Run-length encoded palette BMPs (BI_RLE8, BI_RLE4). ImageMagick writes palette images this
// way by default, with a v4/v5 (108/124-byte) header; golang.org/x/image/bmp decodes only
// uncompressed BMPs, so imgdecode decodes these itself (docs/decode.md). The format is
// Microsoft's documented BITMAPINFOHEADER layout; rows are stored bottom-up.

const (
	biRLE8 = 1
	biRLE4 = 2
)

// bmpRLEHeader is what the headers of an RLE BMP tell.
type bmpRLEHeader struct {
	w, h      int
	bpp       int // 8 (RLE8) or 4 (RLE4)
	palette   color.Palette
	pixOffset int
}

var errBMPTruncated = errors.New("bmp: truncated RLE data")

// bmpRLE parses b's headers; ok is false when b is not an RLE-compressed BMP (the caller
// then uses golang.org/x/image/bmp).
func bmpRLE(b []byte) (hdr bmpRLEHeader, ok bool, err error) {
	if len(b) < 14+40 || string(b[:2]) != "BM" {
		return hdr, false, nil
	}
	le := binary.LittleEndian
	dib := int(le.Uint32(b[14:]))
	comp := le.Uint32(b[30:])
	if dib < 40 || (comp != biRLE8 && comp != biRLE4) {
		return hdr, false, nil
	}
	w, h := int(int32(le.Uint32(b[18:]))), int(int32(le.Uint32(b[22:])))
	bpp := int(le.Uint16(b[28:]))
	if (comp == biRLE8 && bpp != 8) || (comp == biRLE4 && bpp != 4) {
		return hdr, true, fmt.Errorf("bmp: RLE compression with %d bits per pixel", bpp)
	}
	// RLE bitmaps are always bottom-up: a negative height is invalid.
	if w <= 0 || h <= 0 || w > 1<<20 || h > 1<<20 {
		return hdr, true, fmt.Errorf("bmp: RLE image size %dx%d", w, h)
	}
	n := int(le.Uint32(b[46:]))
	if n == 0 {
		n = 1 << bpp
	}
	if n > 1<<bpp {
		return hdr, true, fmt.Errorf("bmp: %d palette entries for %d bits per pixel", n, bpp)
	}
	pal := 14 + dib
	if dib > len(b) || pal+4*n > len(b) {
		return hdr, true, errBMPTruncated
	}
	p := make(color.Palette, 1<<bpp)
	for i := range p {
		p[i] = color.RGBA{A: 255}
	}
	for i := 0; i < n; i++ {
		e := b[pal+4*i:]
		p[i] = color.RGBA{R: e[2], G: e[1], B: e[0], A: 255}
	}
	off := int(le.Uint32(b[10:]))
	if off < pal+4*n || off > len(b) {
		return hdr, true, fmt.Errorf("bmp: pixel data offset %d out of range", off)
	}
	return bmpRLEHeader{w: w, h: h, bpp: bpp, palette: p, pixOffset: off}, true, nil
}

// decodeBMPRLE decodes the pixels of an RLE BMP. Pixels the data skips (delta escapes, early
// end of line or bitmap) keep palette index 0, as Windows' decoder leaves them.
func decodeBMPRLE(b []byte, hdr bmpRLEHeader) (*image.Paletted, error) {
	img := image.NewPaletted(image.Rect(0, 0, hdr.w, hdr.h), hdr.palette)
	d := b[hdr.pixOffset:]
	x, y := 0, 0 // y counts rows from the bottom
	set := func(v byte) {
		if x < hdr.w && y < hdr.h {
			img.Pix[(hdr.h-1-y)*img.Stride+x] = v
		}
		x++
	}
	i := 0
	for {
		if i+2 > len(d) {
			return nil, errBMPTruncated
		}
		n, c := int(d[i]), d[i+1]
		i += 2
		if n > 0 { // encoded run: n pixels of c (RLE4: its two nibbles alternate)
			m := min(n, max(0, hdr.w-x)) // pixels past the row's end are dropped
			for k := 0; k < m; k++ {
				if hdr.bpp == 8 {
					set(c)
				} else if k%2 == 0 {
					set(c >> 4)
				} else {
					set(c & 15)
				}
			}
			x += n - m
			continue
		}
		switch c {
		case 0: // end of line
			x, y = 0, y+1
		case 1: // end of bitmap
			return img, nil
		case 2: // delta: move right and up
			if i+2 > len(d) {
				return nil, errBMPTruncated
			}
			x, y = x+int(d[i]), y+int(d[i+1])
			i += 2
		default: // absolute run of c pixels, padded to a 16-bit boundary
			cnt := int(c)
			bytes := cnt
			if hdr.bpp == 4 {
				bytes = (cnt + 1) / 2
			}
			if i+bytes > len(d) {
				return nil, errBMPTruncated
			}
			m := min(cnt, max(0, hdr.w-x))
			for k := 0; k < m; k++ {
				if hdr.bpp == 8 {
					set(d[i+k])
				} else if k%2 == 0 {
					set(d[i+k/2] >> 4)
				} else {
					set(d[i+k/2] & 15)
				}
			}
			x += cnt - m
			i += bytes + bytes%2
		}
		if y > hdr.h {
			return nil, errors.New("bmp: RLE data runs past the last row")
		}
	}
}
