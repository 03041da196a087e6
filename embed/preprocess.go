package embed

import (
	"errors"
	"image"
	"image/draw"

	xdraw "golang.org/x/image/draw"

	"github.com/imgfs/imgfs/embed/imgdecode"
)

// Preprocessing, version 1: the whole image (no crop, aspect ratio not kept: near-duplicates
// are mostly the same framing, and squashing keeps crops and borders comparable) is box-
// averaged by an integer factor while it stays at least twice the input size, then resampled
// to the network's input size with an anti-aliased bilinear filter (golang.org/x/image/draw
// BiLinear, which widens its kernel when shrinking), alpha composited over white, then each
// 8-bit channel v maps to v/127.5-1 (Keras MobileNetV2's [-1, 1] convention).
//
// Decode (recipe version 2) applies the EXIF orientation and decodes JPEGs at the smallest
// k/8 DCT scale that keeps both sides >= MinDecodeSide ("jpegdct"; "jpegfull" in builds
// without libjpeg-turbo, whose vectors differ slightly and so carry another ID).
var preprocessID = jpegMode() + "-sq-bilinear-pm1"

func jpegMode() string {
	if imgdecode.ScaledJPEG {
		return "jpegdct"
	}
	return "jpegfull"
}

// ErrEmptyImage is returned for images without pixels.
var ErrEmptyImage = errors.New("embed: image has no pixels")

// toInput resamples img to w x h RGBA (over white), after cutting off uniform borders when
// trim is set.
func toInput(img image.Image, w, h int, trim bool) (*image.RGBA, error) {
	b := img.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 {
		return nil, ErrEmptyImage
	}
	if k := shrinkFactor(b.Dx(), b.Dy(), w, h); k > 1 {
		img = boxShrink(img, b.Dx()/k, b.Dy()/k)
		b = img.Bounds()
	}
	if trim {
		m := toRGBA(img)
		b = trimBorders(m)
		img = m
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(dst, dst.Bounds(), image.White, image.Point{}, draw.Src)
	xdraw.BiLinear.Scale(dst, dst.Bounds(), img, b, xdraw.Over, nil)
	return dst, nil
}

// tensorInput converts an RGBA image to the NHWC float input, mirrored left-right when flip.
func tensorInput(src *image.RGBA, flip bool, x []float32) {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	const s = 1 / 127.5
	for y := 0; y < h; y++ {
		row := src.Pix[y*src.Stride : y*src.Stride+4*w]
		out := x[y*w*3 : (y+1)*w*3]
		for xx := 0; xx < w; xx++ {
			sx := xx
			if flip {
				sx = w - 1 - xx
			}
			p := row[4*sx : 4*sx+3]
			o := out[3*xx : 3*xx+3]
			o[0] = float32(p[0])*s - 1
			o[1] = float32(p[1])*s - 1
			o[2] = float32(p[2])*s - 1
		}
	}
}
