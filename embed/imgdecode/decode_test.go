package imgdecode

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const magick = "/usr/bin/convert" // /usr/local/bin/convert may be a stand-in

func needMagick(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(magick); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ImageMagick missing (%v); scripts/setup.sh installs it", err)
		}
		t.Skipf("ImageMagick not installed (%v)", err)
	}
}

// convert runs ImageMagick and returns its standard output.
func convert(t testing.TB, args ...string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(magick, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	// One thread: ImageMagick's OpenMP threads crawl when the cores are shared.
	cmd.Env = append(os.Environ(), "MAGICK_THREAD_LIMIT=1", "OMP_NUM_THREADS=1")
	if err := cmd.Run(); err != nil {
		t.Fatalf("convert %v: %v: %s", args, err, errb.String())
	}
	return out.Bytes()
}

// refPixels is ImageMagick's reading of file (upright, over white) as 8-bit RGB.
func refPixels(t testing.TB, file string) (w, h int, rgb []byte) {
	t.Helper()
	ppm := convert(t, file+"[0]", "-auto-orient", "-background", "white", "-alpha", "remove", "-alpha", "off",
		"-colorspace", "sRGB", "-depth", "8", "ppm:-")
	r := bufio.NewReader(bytes.NewReader(ppm))
	var maxv int
	if _, err := fmt.Fscanf(r, "P6\n%d %d\n%d", &w, &h, &maxv); err != nil {
		t.Fatalf("ppm header: %v", err)
	}
	r.ReadByte()
	rgb = make([]byte, 3*w*h)
	if _, err := io.ReadFull(r, rgb); err != nil {
		t.Fatal(err)
	}
	return w, h, rgb
}

// meanDiff compares img (composited over white) with 8-bit RGB reference pixels.
func meanDiff(t testing.TB, img image.Image, w, h int, rgb []byte) float64 {
	t.Helper()
	b := img.Bounds()
	if b.Dx() != w || b.Dy() != h {
		t.Fatalf("size %dx%d, reference %dx%d", b.Dx(), b.Dy(), w, h)
	}
	var sum float64
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, bl, a := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
			for k, c := range [3]uint32{r, g, bl} {
				v := int((c + 0xffff - a) >> 8)
				d := v - int(rgb[3*(y*w+x)+k])
				sum += float64(max(d, -d))
			}
		}
	}
	return sum / float64(3*w*h)
}

// scene draws an asymmetric test picture with ImageMagick into dir/name.png.
func scene(t testing.TB, dir string, w, h int) string {
	p := filepath.Join(dir, "scene.png")
	convert(t, "-size", fmt.Sprintf("%dx%d", w, h), "gradient:orange-navy",
		"-fill", "red", "-draw", fmt.Sprintf("rectangle 0,0 %d,%d", w/3, h/4),
		"-fill", "white", "-draw", fmt.Sprintf("circle %d,%d %d,%d", 3*w/4, 3*h/4, 3*w/4+h/8, 3*h/4), "-depth", "8", p)
	return p
}

// v5ToV4 rewrites the BMP at p from a 124-byte (v5) header to a 108-byte (v4) one: the v5
// header's last 16 bytes (intent, profile offset and size, reserved) are dropped.
func v5ToV4(t *testing.T, p string) {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if le.Uint32(b[14:]) != 124 {
		t.Fatalf("%s: header of %d bytes, want 124", p, le.Uint32(b[14:]))
	}
	b = append(b[:14+108:14+108], b[14+124:]...)
	le.PutUint32(b[2:], uint32(len(b)))
	le.PutUint32(b[10:], le.Uint32(b[10:])-16)
	le.PutUint32(b[14:], 108)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeFormats(t *testing.T) {
	needMagick(t)
	dir := t.TempDir()
	src := scene(t, dir, 120, 80)
	cases := []struct {
		name, format string
		args         []string
		tol          float64
	}{
		{"baseline.jpg", "jpeg", []string{"-quality", "90"}, 1.5},
		{"progressive.jpg", "jpeg", []string{"-interlace", "JPEG"}, 1.5},
		{"gray.jpg", "jpeg", []string{"-colorspace", "Gray"}, 1.5},
		{"cmyk.jpg", "jpeg", []string{"-colorspace", "CMYK"}, 4},
		{"rgb8.png", "png", []string{"-depth", "8"}, 0.01},
		{"rgb16.png", "png", []string{"-depth", "16"}, 0.6},
		{"alpha.png", "png", []string{"-alpha", "set", "-channel", "A", "-evaluate", "set", "50%", "+channel"}, 0.6},
		{"pal.png", "png", []string{"-colors", "16", "PNG8:"}, 0.01},
		{"anim.gif", "gif", []string{"(", "+clone", "-negate", ")"}, 0.01},
		{"lossy.webp", "webp", []string{"-quality", "85", "-define", "webp:lossless=false"}, 2},
		{"alpha-lossy.webp", "webp", []string{"-alpha", "set", "-channel", "A", "-evaluate", "set", "50%", "+channel", "-quality", "85", "-define", "webp:lossless=false"}, 2},
		{"lossless.webp", "webp", []string{"-define", "webp:lossless=true"}, 0.01},
		{"rgb.bmp", "bmp", []string{"-type", "TrueColor"}, 0.01},
		{"rgba.bmp", "bmp", []string{"-alpha", "set", "-channel", "A", "-evaluate", "set", "50%", "+channel", "-type", "TrueColorAlpha"}, 0.6},
		{"pal.bmp", "bmp", []string{"-colors", "16", "-compress", "None", "-type", "Palette"}, 0.01},
		// ImageMagick's default for palette BMPs: RLE8 with a v5 header (bmprle.go).
		{"rle8.bmp", "bmp", []string{"-colors", "200", "-type", "Palette"}, 0.01},
		{"rle8-16colours.bmp", "bmp", []string{"-colors", "16", "-type", "Palette", "-compress", "RLE"}, 0.01},
		{"rle8-v3.bmp", "bmp", []string{"-colors", "64", "-type", "Palette"}, 0.01},
		{"bilevel.bmp", "bmp", []string{"-monochrome", "-compress", "None"}, 0.01},
		// ImageMagick 6 writes no 108-byte (v4) header: its v5 file, cut down to v4 below.
		{"rle8-v4.bmp", "bmp", []string{"-colors", "200", "-type", "Palette"}, 0.01},
		{"pal-v4.bmp", "bmp", []string{"-colors", "16", "-compress", "None", "-type", "Palette"}, 0.01},
		// OS/2 12-byte headers (bmpcore.go).
		{"os2-pal.bmp", "bmp", []string{"-colors", "16", "-type", "Palette"}, 0.01},
		{"os2-rgb.bmp", "bmp", []string{"-type", "TrueColor"}, 0.01},
		{"gray16.png", "png", []string{"-colorspace", "Gray", "-depth", "16"}, 0.6},
		{"rgba16.png", "png", []string{"-alpha", "set", "-channel", "A", "-evaluate", "set", "50%", "+channel", "-depth", "16"}, 0.6},
		{"cmyk-progressive.jpg", "jpeg", []string{"-colorspace", "CMYK", "-interlace", "JPEG"}, 4},
		{"lzw.tif", "tiff", []string{"-compress", "lzw", "-depth", "8"}, 0.01},
		{"deflate16.tif", "tiff", []string{"-compress", "zip", "-depth", "16"}, 0.6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			args := append([]string{src}, c.args...)
			out := p
			switch c.name {
			case "pal.png":
				args, out = []string{src, "-colors", "16"}, "PNG8:"+p
			case "rle8-v3.bmp":
				out = "BMP3:" + p // 40-byte header
			case "os2-pal.bmp", "os2-rgb.bmp":
				out = "BMP2:" + p
			}
			convert(t, append(args, out)...)
			if strings.HasSuffix(c.name, "-v4.bmp") {
				v5ToV4(t, p)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			img, format, err := Decode(f, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if format != c.format {
				t.Errorf("format %q, want %q", format, c.format)
			}
			w, h, rgb := refPixels(t, p)
			if d := meanDiff(t, img, w, h, rgb); d > c.tol {
				t.Errorf("%T differs from ImageMagick's decoding by %.3f levels on average (tolerance %.2f)", img, d, c.tol)
			}
		})
	}
}

// withExif inserts an APP1 Exif segment holding orientation o after the JPEG's SOI.
func withExif(jpg []byte, o int, bo binary.ByteOrder) []byte {
	tiff := make([]byte, 8+2+12+4)
	if bo == binary.BigEndian {
		copy(tiff, "MM")
	} else {
		copy(tiff, "II")
	}
	bo.PutUint16(tiff[2:], 42)
	bo.PutUint32(tiff[4:], 8)
	bo.PutUint16(tiff[8:], 1)
	e := tiff[10:]
	bo.PutUint16(e, 0x0112)
	bo.PutUint16(e[2:], 3)
	bo.PutUint32(e[4:], 1)
	bo.PutUint16(e[8:], uint16(o))
	seg := append([]byte("Exif\x00\x00"), tiff...)
	app1 := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(app1[2:], uint16(len(seg)+2))
	out := append([]byte{}, jpg[:2]...)
	out = append(out, app1...)
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

var orientNames = []string{"", "TopLeft", "TopRight", "BottomRight", "BottomLeft", "LeftTop", "RightTop", "RightBottom", "LeftBottom"}

func TestOrientation(t *testing.T) {
	needMagick(t)
	dir := t.TempDir()
	src := scene(t, dir, 96, 48)
	base := convert(t, src, "-strip", "-quality", "95", "jpg:-")
	for o := 1; o <= 8; o++ {
		for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			data := withExif(base, o, bo)
			p := filepath.Join(dir, fmt.Sprintf("o%d-%v.jpg", o, bo))
			os.WriteFile(p, data, 0o600)
			// ImageMagick reads the orientation we wrote (checks withExif, not the decoder).
			if got := strings.TrimSpace(string(convert(t, p, "-format", "%[orientation]", "info:"))); got != orientNames[o] {
				t.Fatalf("ImageMagick reads orientation %q from our segment, want %q", got, orientNames[o])
			}
			if got := Orientation(data); got != o {
				t.Errorf("Orientation = %d, want %d", got, o)
			}
			img, _, err := DecodeBytes(data, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			w, h, rgb := refPixels(t, p)
			if d := meanDiff(t, img, w, h, rgb); d > 1.5 {
				t.Errorf("orientation %d (%v): differs from convert -auto-orient by %.2f levels", o, bo, d)
			}
		}
		// TIFF files carry the orientation in their own directory.
		p := filepath.Join(dir, fmt.Sprintf("o%d.tif", o))
		convert(t, src, "-orient", orientNames[o], p)
		data, _ := os.ReadFile(p)
		if got := Orientation(data); got != o {
			t.Errorf("TIFF: Orientation = %d, want %d", got, o)
		}
		img, _, err := DecodeBytes(data, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		w, h, rgb := refPixels(t, p)
		if d := meanDiff(t, img, w, h, rgb); d > 0.6 {
			t.Errorf("TIFF orientation %d: differs from convert -auto-orient by %.2f levels", o, d)
		}
	}
	// Malformed segments are ignored, not trusted.
	for _, bad := range [][]byte{
		withExif(base, 9, binary.LittleEndian),
		withExif(base, 0, binary.BigEndian),
		append(append([]byte{0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x10}, "Exif\x00\x00II*\x00\xff\xff\xff\x7f"...), base[2:]...),
	} {
		if got := Orientation(bad); got != 1 {
			t.Errorf("malformed EXIF gave orientation %d", got)
		}
	}
}

func seeds(t testing.TB) map[string][]byte {
	files, _ := filepath.Glob("testdata/seed*")
	if len(files) < 10 {
		t.Fatalf("testdata seeds missing: %v", files)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

func TestSeedsDecode(t *testing.T) {
	for name, b := range seeds(t) {
		img, format, err := DecodeBytes(b, 1<<20)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		want := 40
		if strings.Contains(name, "orient6") {
			want = 30 // turned upright: 30 wide, 40 high
		}
		if img.Bounds().Dx() != want || Sniff(b) != format {
			t.Errorf("%s: %v %s", name, img.Bounds(), format)
		}
	}
}

func TestCorruptAndTruncated(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for name, b := range seeds(t) {
		// Truncation anywhere after the signature is an error, never a partial image.
		cuts := []int{len(b) / 4, len(b) / 2, len(b) * 3 / 4, len(b) - 20}
		if strings.HasSuffix(name, ".tif") {
			cuts = cuts[:3] // the last bytes of these TIFFs are tags the decoder does not need
		}
		for _, n := range cuts {
			_, _, err := DecodeBytes(b[:n], 1<<20)
			if err == nil {
				t.Errorf("%s truncated to %d of %d bytes: no error", name, n, len(b))
			} else if !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s truncated: error %v is not ErrCorrupt", name, err)
			}
		}
		// Random damage: an error or an image, never a decoder panic.
		for i := 0; i < 300; i++ {
			c := append([]byte{}, b...)
			for k := 0; k < 1+r.Intn(4); k++ {
				c[8+r.Intn(len(c)-8)] ^= byte(1 + r.Intn(255))
			}
			if _, _, err := DecodeBytes(c, 1<<20); err != nil && strings.Contains(err.Error(), "decoder failed") {
				t.Errorf("%s: decoder panicked on damaged input: %v", name, err)
			}
		}
	}
	for _, in := range []string{"", "x", "not an image at all", "\xff\xd8\xff", "\x89PNG\r\n\x1a\n", "GIF89a", "RIFF\x00\x00\x00\x00WEBP", "BM", "II*\x00"} {
		if _, _, err := DecodeBytes([]byte(in), 1<<20); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	// RLE BMPs (bmprle.go): every truncation of a valid file is an error, never a panic.
	if _, err := os.Stat(magick); err == nil {
		rle := convert(t, "-size", "16x16", "xc:red", "-type", "Palette", "-compress", "RLE", "bmp:-")
		if img, _, err := DecodeBytes(rle, 1<<20); err != nil {
			t.Errorf("RLE BMP: %v", err)
		} else if r, g, b, _ := img.At(5, 5).RGBA(); r>>8 != 255 || g != 0 || b != 0 {
			t.Errorf("RLE BMP: pixel %v, want red", img.At(5, 5))
		}
		for n := 0; n < len(rle)-2; n++ {
			if _, _, err := DecodeBytes(rle[:n], 1<<20); err == nil {
				t.Errorf("RLE BMP truncated to %d of %d bytes accepted", n, len(rle))
			}
		}
	}
	if _, _, err := DecodeBytes([]byte("hello"), 1<<20); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("unknown format: %v", err)
	}
	heic := []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
	if _, _, err := DecodeBytes(heic, 1<<20); !errors.Is(err, ErrUnknownFormat) || !strings.Contains(err.Error(), "HEIC") {
		t.Errorf("HEIC: %v", err)
	}
	if _, err := os.Stat(magick); err == nil {
		// A real phone-style HEIC, when this ImageMagick has the libheif coder.
		p := filepath.Join(t.TempDir(), "x.heic")
		if out, err := exec.Command(magick, "-size", "64x48", "gradient:red-blue", p).CombinedOutput(); err != nil {
			t.Logf("ImageMagick cannot write HEIC here (%v: %s); checked the header only", err, out)
		} else if b, err := os.ReadFile(p); err != nil {
			t.Fatal(err)
		} else if _, _, err := DecodeBytes(b, 1<<20); !errors.Is(err, ErrUnknownFormat) || !strings.Contains(err.Error(), "HEIC") {
			t.Errorf("ImageMagick's HEIC: %v", err)
		}
	}
}

// bombPNG is a valid PNG header (and one tiny IDAT) declaring w x h pixels.
func bombPNG(w, h int) []byte {
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1)))
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b[16:], uint32(w))
	binary.BigEndian.PutUint32(b[20:], uint32(h))
	binary.BigEndian.PutUint32(b[29:], crc32IEEE(b[12:29]))
	return b
}

func TestDecompressionBombs(t *testing.T) {
	needMagick(t)
	// A real JPEG whose frame header is patched to 20000x20000 (a few KB that would decode
	// to 1.2 GB): refused from the header, before any pixel is decoded.
	bigJPEG := convert(t, "-size", "64x64", "xc:gray", "-quality", "10", "jpg:-")
	sof := bytes.Index(bigJPEG, []byte{0xFF, 0xC0})
	if sof < 0 {
		t.Fatal("no SOF0")
	}
	binary.BigEndian.PutUint16(bigJPEG[sof+5:], 20000)
	binary.BigEndian.PutUint16(bigJPEG[sof+7:], 20000)
	inputs := map[string][]byte{"png 100000x100000": bombPNG(100000, 100000), "jpeg 20000x20000": bigJPEG}
	// A GIF whose logical screen is 65535x65535.
	gif := convert(t, "-size", "4x4", "xc:red", "gif:-")
	binary.LittleEndian.PutUint16(gif[6:], 65535)
	binary.LittleEndian.PutUint16(gif[8:], 65535)
	inputs["gif 65535x65535"] = gif
	for name, b := range inputs {
		start := time.Now()
		_, _, err := DecodeBytes(b, 50_000_000)
		if !errors.Is(err, ErrTooManyPixels) || !strings.Contains(err.Error(), "exceeds the limit") {
			t.Errorf("%s: %v", name, err)
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("%s: refusing took %v (decoded pixels?)", name, d)
		}
	}
	if _, _, err := DecodeBytes(bigJPEG, 0); err == nil {
		t.Error("MaxPixels 0 accepted")
	}
}

func TestScaledJPEG(t *testing.T) {
	needMagick(t)
	dir := t.TempDir()
	src := scene(t, dir, 2000, 1500)
	p := filepath.Join(dir, "photo.jpg")
	convert(t, src, "-quality", "90", p)
	b, _ := os.ReadFile(p)
	if got := ScaleFor(2000, 1500, 448, 448); got != 3 {
		t.Errorf("ScaleFor = %d, want 3", got)
	}
	img, _, err := DecodeWith(b, Options{MaxPixels: 1 << 24, MinWidth: 448, MinHeight: 448})
	if err != nil {
		t.Fatal(err)
	}
	if !ScaledJPEG {
		if img.Bounds().Dx() != 2000 {
			t.Errorf("without libjpeg: %v", img.Bounds())
		}
		t.Skip("built without libjpeg-turbo: no scaled decoding")
	}
	if img.Bounds() != image.Rect(0, 0, 750, 563) {
		t.Fatalf("scaled decode gave %v, want 750x563", img.Bounds())
	}
	// The 3/8-scale decode matches ImageMagick's area resize of the full image.
	ref := filepath.Join(dir, "ref.png")
	convert(t, p, "-filter", "box", "-resize", "750x563!", ref)
	w, h, rgb := refPixels(t, ref)
	if d := meanDiff(t, img, w, h, rgb); d > 2 {
		t.Errorf("scaled decode differs from a box resize by %.2f levels", d)
	}
	// Orientation 6 swaps the minimum sides.
	img, _, err = DecodeWith(withExif(b, 6, binary.BigEndian), Options{MaxPixels: 1 << 24, MinWidth: 1000, MinHeight: 300})
	if err != nil {
		t.Fatal(err)
	}
	// Stored 2000x1500 must give at least 300x1000 stored: k=6, 1500x1125, upright 1125x1500.
	if img.Bounds() != image.Rect(0, 0, 1125, 1500) {
		t.Errorf("oriented scaled decode gave %v", img.Bounds())
	}
}
