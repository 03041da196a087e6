package imgdecode

import "image"

// webpRGB converts the YCbCr image golang.org/x/image/webp returns for lossy WebP to RGB.
// VP8 stores BT.601 "studio range" YCbCr (Y 16..235), but image.YCbCr's colour model is
// JFIF full range, so reading the pixels through it loses contrast and shifts colours
// (measured: rgb(200,60,30) came back as (189,68,41); libwebp gives (200,61,30)).
// Chroma is taken from the co-sited sample (no fancy upsampling).
func webpRGB(img image.Image) image.Image {
	var (
		ycc   *image.YCbCr
		alpha []uint8
		astr  int
	)
	switch m := img.(type) {
	case *image.YCbCr:
		ycc = m
	case *image.NYCbCrA:
		ycc, alpha, astr = &m.YCbCr, m.A, m.AStride
	default:
		return img // lossless WebP decodes to NRGBA already
	}
	b := ycc.Rect
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := b.Min.Y; y < b.Max.Y; y++ {
		o := out.Pix[(y-b.Min.Y)*out.Stride:]
		for x := b.Min.X; x < b.Max.X; x++ {
			yy := (int32(ycc.Y[ycc.YOffset(x, y)]) - 16) * 298
			ci := ycc.COffset(x, y)
			cb, cr := int32(ycc.Cb[ci])-128, int32(ycc.Cr[ci])-128
			i := 4 * (x - b.Min.X)
			o[i] = clamp8((yy + 409*cr + 128) >> 8)
			o[i+1] = clamp8((yy - 100*cb - 208*cr + 128) >> 8)
			o[i+2] = clamp8((yy + 516*cb + 128) >> 8)
			o[i+3] = 255
			if alpha != nil {
				o[i+3] = alpha[(y-b.Min.Y)*astr+(x-b.Min.X)]
			}
		}
	}
	return out
}

func clamp8(v int32) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}
