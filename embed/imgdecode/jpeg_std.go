//go:build !cgo || imgfs_nolibjpeg

package imgdecode

import (
	"bytes"
	"image"
	"image/jpeg"
)

// ScaledJPEG tells whether JPEGs are decoded by libjpeg-turbo with DCT scaling.
const ScaledJPEG = false

type jpegHeader struct {
	w, h, comps int
	cmyk        bool
}

func jpegConfig(b []byte) (jpegHeader, error) {
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return jpegHeader{}, err
	}
	return jpegHeader{w: cfg.Width, h: cfg.Height, comps: 3}, nil
}

// decodeJPEGScaled ignores the scale: image/jpeg has no DCT scaling.
func decodeJPEGScaled(b []byte, _ jpegHeader, _ int) (image.Image, error) {
	return decodeJPEGStd(b)
}
