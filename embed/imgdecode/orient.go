package imgdecode

import (
	"image"
	"image/draw"
)

// Orient returns img turned upright for EXIF orientation o (1..8; other values: img).
// 2 mirrors left-right, 3 turns 180 degrees, 4 mirrors top-bottom, 5 transposes, 6 turns
// 90 degrees clockwise, 7 transverses, 8 turns 90 degrees counter-clockwise.
func Orient(img image.Image, o int) image.Image {
	if o < 2 || o > 8 {
		return img
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	var (
		src, dst  []uint8
		sStride   int
		dStride   int
		bpp       int
		out       image.Image
		dstOrigin = image.Rect(0, 0, dw, dh)
	)
	switch m := img.(type) {
	case *image.RGBA:
		d := image.NewRGBA(dstOrigin)
		src, sStride, bpp, dst, dStride, out = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 4, d.Pix, d.Stride, d
	case *image.NRGBA:
		d := image.NewNRGBA(dstOrigin)
		src, sStride, bpp, dst, dStride, out = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 4, d.Pix, d.Stride, d
	case *image.Gray:
		d := image.NewGray(dstOrigin)
		src, sStride, bpp, dst, dStride, out = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 1, d.Pix, d.Stride, d
	case *image.Gray16:
		d := image.NewGray16(dstOrigin)
		src, sStride, bpp, dst, dStride, out = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 2, d.Pix, d.Stride, d
	case *image.RGBA64:
		d := image.NewRGBA64(dstOrigin)
		src, sStride, bpp, dst, dStride, out = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 8, d.Pix, d.Stride, d
	case *image.NRGBA64:
		d := image.NewNRGBA64(dstOrigin)
		src, sStride, bpp, dst, dStride, out = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 8, d.Pix, d.Stride, d
	case *image.CMYK:
		d := image.NewCMYK(dstOrigin)
		src, sStride, bpp, dst, dStride, out = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride, 4, d.Pix, d.Stride, d
	default: // YCbCr, Paletted, ...: convert to RGBA first
		rgba := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.Draw(rgba, rgba.Rect, img, b.Min, draw.Src)
		return Orient(rgba, o)
	}
	for y := 0; y < dh; y++ {
		row := dst[y*dStride : y*dStride+dw*bpp]
		for x := 0; x < dw; x++ {
			var sx, sy int
			switch o {
			case 2:
				sx, sy = w-1-x, y
			case 3:
				sx, sy = w-1-x, h-1-y
			case 4:
				sx, sy = x, h-1-y
			case 5:
				sx, sy = y, x
			case 6:
				sx, sy = y, h-1-x
			case 7:
				sx, sy = w-1-y, h-1-x
			case 8:
				sx, sy = w-1-y, x
			}
			copy(row[x*bpp:x*bpp+bpp], src[sy*sStride+sx*bpp:])
		}
	}
	return out
}
