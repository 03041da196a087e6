package imgdecode

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
)

func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

// FuzzDecode: any input gives an error or an upright image within the pixel cap, never a
// panic (the seed corpus, one file of every format and variant, runs in plain go test).
func FuzzDecode(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b, uint16(0))
		f.Add(b, uint16(20))
	}
	jpg := seeds(f)["seed.jpg"]
	for o := 1; o <= 8; o++ {
		f.Add(withExif(jpg, o, binary.LittleEndian), uint16(o))
	}
	f.Add(bombPNG(70000, 70000), uint16(0))
	const maxPixels = 1 << 22
	f.Fuzz(func(t *testing.T, b []byte, minSide uint16) {
		if o := Orientation(b); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
		img, _, err := DecodeWith(b, Options{MaxPixels: maxPixels, MinWidth: int(minSide), MinHeight: int(minSide)})
		if err != nil {
			if img != nil {
				t.Fatal("image and error")
			}
			return
		}
		r := img.Bounds()
		if r.Dx() <= 0 || r.Dy() <= 0 || r.Dx()*r.Dy() > maxPixels {
			t.Fatalf("bounds %v", r)
		}
	})
}
