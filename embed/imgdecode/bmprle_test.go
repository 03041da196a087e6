package imgdecode

import (
	"encoding/binary"
	"image"
	"testing"
)

// rleBMP builds a BMP with a 40-byte header, a 16-entry palette (entry i = gray 16*i) and
// the given RLE data.
func rleBMP(w, h int32, bpp uint16, comp uint32, data []byte) []byte {
	le := binary.LittleEndian
	const pal = 16
	off := 14 + 40 + 4*pal
	b := make([]byte, off, off+len(data))
	copy(b, "BM")
	le.PutUint32(b[2:], uint32(off+len(data)))
	le.PutUint32(b[10:], uint32(off))
	le.PutUint32(b[14:], 40)
	le.PutUint32(b[18:], uint32(w))
	le.PutUint32(b[22:], uint32(h))
	le.PutUint16(b[26:], 1)
	le.PutUint16(b[28:], bpp)
	le.PutUint32(b[30:], comp)
	le.PutUint32(b[46:], pal)
	for i := 0; i < pal; i++ {
		g := byte(16 * i)
		copy(b[54+4*i:], []byte{g, g, g, 0})
	}
	return append(b, data...)
}

// TestBMPRLEEscapes pins the RLE4 and RLE8 escapes ImageMagick does not write (RLE4, delta,
// odd absolute runs) against hand-decoded pixels. Rows are stored bottom-up.
func TestBMPRLEEscapes(t *testing.T) {
	for _, c := range []struct {
		name string
		bpp  uint16
		comp uint32
		data []byte
		want [][]uint8 // palette indices, top row first
	}{
		{"rle4", 4, biRLE4, []byte{
			5, 0x12, 0, 0, // bottom row: 1 2 1 2 1, end of line
			0, 3, 0x34, 0x50, 2, 0x77, 0, 1, // top row: absolute 3 4 5 (padded), run 7 7, end
		}, [][]uint8{{3, 4, 5, 7, 7}, {1, 2, 1, 2, 1}}},
		{"rle8", 8, biRLE8, []byte{
			2, 9, 0, 2, 2, 0, 1, 4, 0, 0, // bottom row: 9 9, delta +2, 4; end of line
			0, 3, 6, 7, 8, 0, 0, 1, // top row: absolute 6 7 8 (padded to even), end of bitmap
		}, [][]uint8{{6, 7, 8, 0, 0}, {9, 9, 0, 0, 4}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := rleBMP(5, 2, c.bpp, c.comp, c.data)
			img, f, err := DecodeBytes(b, 100)
			if err != nil || f != "bmp" {
				t.Fatalf("%v %q", err, f)
			}
			p, ok := img.(*image.Paletted)
			if !ok {
				t.Fatalf("%T", img)
			}
			for y, row := range c.want {
				for x, v := range row {
					if got := p.ColorIndexAt(x, y); got != v {
						t.Errorf("pixel %d,%d: index %d, want %d", x, y, got, v)
					}
				}
			}
			for n := 0; n < len(b)-2; n++ {
				if _, _, err := DecodeBytes(b[:n], 100); err == nil {
					t.Errorf("truncated to %d bytes: accepted", n)
				}
			}
		})
	}
	// Invalid headers: a clear error, not a panic or a huge allocation.
	for _, b := range [][]byte{
		rleBMP(5, -2, 8, biRLE8, []byte{0, 1}),    // top-down RLE
		rleBMP(5, 2, 4, biRLE8, []byte{0, 1}),     // RLE8 with 4 bits per pixel
		rleBMP(1<<21, 1, 8, biRLE8, []byte{0, 1}), // absurd width
	} {
		if _, _, err := DecodeBytes(b, 1<<30); err == nil {
			t.Errorf("invalid RLE BMP accepted")
		}
	}
}
