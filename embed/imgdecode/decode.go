// Package imgdecode is imgfs's one entry point for decoding photos: JPEG, PNG, GIF (first
// frame), WebP, BMP and TIFF, with the EXIF orientation applied, a cap on the pixel count
// checked from the header before any pixel is decoded, and a clear error (never a panic)
// for corrupt, truncated or unsupported input.
//
// JPEGs are decoded by libjpeg-turbo through cgo, which can decode at 1/8 to 8/8 scale in
// the DCT domain (DecodeWith and Options.MinWidth); built without cgo or with the tag
// imgfs_nolibjpeg, image/jpeg decodes them at full size. See docs/decode.md.
package imgdecode

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
)

// MaxInputBytes caps the size of an encoded image Decode reads.
const MaxInputBytes = 512 << 20

var (
	// ErrTooManyPixels: the header declares more pixels than the caller allows.
	ErrTooManyPixels = errors.New("too many pixels")
	// ErrUnknownFormat: the bytes start like none of the supported formats.
	ErrUnknownFormat = errors.New("unknown image format (want JPEG, PNG, GIF, WebP, BMP or TIFF)")
	// ErrCorrupt: the data is truncated or malformed.
	ErrCorrupt = errors.New("corrupt or truncated image")
)

// Options control DecodeWith.
type Options struct {
	// MaxPixels caps width*height as declared in the header (required, > 0). Larger images
	// are refused before decoding: a 100-byte PNG can declare 4 gigapixels.
	MaxPixels int
	// MinWidth and MinHeight (after orientation), when > 0, let a decoder that can (JPEG,
	// with libjpeg-turbo) return the image downscaled by k/8, the smallest k that keeps it
	// at least this size. Zero: full size.
	MinWidth, MinHeight int
}

// Config is what the header tells.
type Config struct {
	Format        string // "jpeg", "png", "gif", "webp", "bmp" or "tiff"
	Width, Height int    // as stored (before orientation)
	Orientation   int    // EXIF orientation 1..8 (1 when absent)
}

// Decode reads an image of any supported format from r and returns it at full size,
// upright (EXIF orientation applied), with its format name.
func Decode(r io.Reader, maxPixels int) (image.Image, string, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxInputBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("imgdecode: read: %w", err)
	}
	if len(b) > MaxInputBytes {
		return nil, "", fmt.Errorf("imgdecode: input larger than %d bytes", MaxInputBytes)
	}
	return DecodeWith(b, Options{MaxPixels: maxPixels})
}

// DecodeBytes is Decode for an image held in memory.
func DecodeBytes(b []byte, maxPixels int) (image.Image, string, error) {
	return DecodeWith(b, Options{MaxPixels: maxPixels})
}

// Sniff names the format b starts with ("" when none).
func Sniff(b []byte) string {
	switch {
	case len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return "jpeg"
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "png"
	case bytes.HasPrefix(b, []byte("GIF87a")) || bytes.HasPrefix(b, []byte("GIF89a")):
		return "gif"
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "webp"
	case bytes.HasPrefix(b, []byte("BM")):
		return "bmp"
	case bytes.HasPrefix(b, []byte("II*\x00")) || bytes.HasPrefix(b, []byte("MM\x00*")):
		return "tiff"
	}
	return ""
}

// heifBrand returns the major brand of an ISO-BMFF still image (HEIC from phones, AVIF), or
// "". No decoder for them is reachable as a Go module (docs/decode.md), so they get a clear
// error instead of "unknown format".
func heifBrand(b []byte) string {
	if len(b) < 12 || string(b[4:8]) != "ftyp" {
		return ""
	}
	switch brand := string(b[8:12]); brand {
	case "heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1", "avif", "avis":
		return brand
	}
	return ""
}

// DecodeConfig reads the header: format, stored size and orientation.
func DecodeConfig(b []byte) (Config, error) {
	format := Sniff(b)
	if format == "" {
		if brand := heifBrand(b); brand != "" {
			return Config{}, fmt.Errorf("imgdecode: %w: HEIF/HEIC/AVIF (brand %q) is not supported; convert it to JPEG", ErrUnknownFormat, brand)
		}
		return Config{}, fmt.Errorf("imgdecode: %w", ErrUnknownFormat)
	}
	var w, h int
	err := guard(format, func() error {
		if format == "jpeg" {
			hdr, err := jpegConfig(b)
			w, h = hdr.w, hdr.h
			return err
		}
		var cfg image.Config
		var err error
		r := bytes.NewReader(b)
		switch format {
		case "png":
			cfg, err = png.DecodeConfig(r)
		case "gif":
			cfg, err = gif.DecodeConfig(r)
		case "webp":
			cfg, err = webp.DecodeConfig(r)
		case "bmp":
			if nb, ok, cerr := bmpFromCore(b); ok {
				if cerr != nil {
					return cerr
				}
				r = bytes.NewReader(nb)
			}
			if hdr, ok, rerr := bmpRLE(b); ok {
				cfg, err = image.Config{Width: hdr.w, Height: hdr.h}, rerr
			} else {
				cfg, err = bmp.DecodeConfig(r)
			}
		case "tiff":
			cfg, err = tiff.DecodeConfig(r)
		}
		w, h = cfg.Width, cfg.Height
		return err
	})
	if err != nil {
		return Config{}, err
	}
	if w <= 0 || h <= 0 {
		return Config{}, fmt.Errorf("imgdecode: %s: %w: image is %dx%d", format, ErrCorrupt, w, h)
	}
	return Config{Format: format, Width: w, Height: h, Orientation: Orientation(b)}, nil
}

// DecodeWith decodes b as Options say.
func DecodeWith(b []byte, o Options) (image.Image, string, error) {
	cfg, err := DecodeConfig(b)
	if err != nil {
		return nil, cfg.Format, err
	}
	f := cfg.Format
	if o.MaxPixels <= 0 {
		return nil, f, errors.New("imgdecode: MaxPixels must be positive")
	}
	if int64(cfg.Width)*int64(cfg.Height) > int64(o.MaxPixels) {
		return nil, f, fmt.Errorf("imgdecode: %s: %w: %dx%d exceeds the limit of %d pixels",
			f, ErrTooManyPixels, cfg.Width, cfg.Height, o.MaxPixels)
	}
	var img image.Image
	err = guard(f, func() error {
		var err error
		r := bytes.NewReader(b)
		switch f {
		case "jpeg":
			img, err = decodeJPEG(b, cfg, o)
		case "png":
			img, err = png.Decode(r)
		case "gif":
			img, err = gif.Decode(r)
		case "webp":
			if img, err = webp.Decode(r); err == nil {
				img = webpRGB(img)
			}
		case "bmp":
			if nb, ok, cerr := bmpFromCore(b); ok {
				if cerr != nil {
					return cerr
				}
				r = bytes.NewReader(nb)
			}
			if hdr, ok, rerr := bmpRLE(b); ok {
				if err = rerr; err == nil {
					img, err = decodeBMPRLE(b, hdr)
				}
			} else {
				img, err = bmp.Decode(r)
			}
		case "tiff":
			img, err = tiff.Decode(r)
		}
		return err
	})
	if err != nil {
		return nil, f, err
	}
	if bb := img.Bounds(); bb.Dx() <= 0 || bb.Dy() <= 0 {
		return nil, f, fmt.Errorf("imgdecode: %s: %w: no pixels", f, ErrCorrupt)
	}
	return Orient(img, cfg.Orientation), f, nil
}

func decodeJPEG(b []byte, cfg Config, o Options) (image.Image, error) {
	hdr, err := jpegConfig(b)
	if err != nil {
		return nil, err
	}
	mw, mh := o.MinWidth, o.MinHeight
	if cfg.Orientation >= 5 {
		mw, mh = mh, mw
	}
	return decodeJPEGScaled(b, hdr, ScaleFor(hdr.w, hdr.h, mw, mh))
}

// ScaleFor is the smallest k in 1..8 for which a w x h JPEG decoded at scale k/8 is at
// least minW x minH (8: full size).
func ScaleFor(w, h, minW, minH int) int {
	if minW <= 0 && minH <= 0 {
		return 8
	}
	for k := 1; k < 8; k++ {
		if scaledSize(w, k) >= minW && scaledSize(h, k) >= minH {
			return k
		}
	}
	return 8
}

// scaledSize is libjpeg's output size for n pixels at scale k/8 (rounded up).
func scaledSize(n, k int) int { return (n*k + 7) / 8 }

func decodeJPEGStd(b []byte) (image.Image, error) {
	return jpeg.Decode(bytes.NewReader(b))
}

// guard runs a decoder, turning its errors into ErrCorrupt-wrapped ones and a panic on
// malformed input (a decoder bug) into an error rather than a crash.
func guard(format string, f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("imgdecode: %s: %w: decoder failed (%v)", format, ErrCorrupt, p)
		}
	}()
	if err := f(); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("imgdecode: %s: %w: truncated", format, ErrCorrupt)
		}
		return fmt.Errorf("imgdecode: %s: %w: %v", format, ErrCorrupt, err)
	}
	return nil
}
