package imgdecode

import (
	"encoding/binary"
	"fmt"
)

// OS/2-style BMPs carry a 12-byte BITMAPCOREHEADER (16-bit width and height, 3-byte palette
// entries); ImageMagick writes them as "BMP2:". golang.org/x/image/bmp reads only the
// 40-byte and later headers, so bmpFromCore rewrites such a file into the 40-byte layout
// (same pixel rows, the palette widened to 4 bytes an entry) before decoding
// (docs/decode.md).

// bmpFromCore returns b rewritten with a BITMAPINFOHEADER when b is a BMP with a core header
// (ok false otherwise: b is left to the other BMP decoders).
func bmpFromCore(b []byte) (out []byte, ok bool, err error) {
	if len(b) < 14+12 || string(b[:2]) != "BM" || binary.LittleEndian.Uint32(b[14:]) != 12 {
		return nil, false, nil
	}
	le := binary.LittleEndian
	w, h := int(le.Uint16(b[18:])), int(le.Uint16(b[20:]))
	bpp := int(le.Uint16(b[24:]))
	off := int(le.Uint32(b[10:]))
	if w == 0 || h == 0 {
		return nil, true, fmt.Errorf("bmp: image size %dx%d", w, h)
	}
	if bpp != 1 && bpp != 4 && bpp != 8 && bpp != 24 {
		return nil, true, fmt.Errorf("bmp: OS/2 header with %d bits per pixel", bpp)
	}
	n := 0
	if bpp <= 8 {
		n = min(1<<bpp, (off-26)/3)
		if n <= 0 {
			return nil, true, fmt.Errorf("bmp: OS/2 header without a palette")
		}
	}
	if off < 26+3*n || off > len(b) {
		return nil, true, fmt.Errorf("bmp: pixel data offset %d out of range", off)
	}
	pix := b[off:]
	newOff := 14 + 40 + 4*n
	out = make([]byte, 0, newOff+len(pix))
	out = append(out, 'B', 'M')
	out = le.AppendUint32(out, uint32(newOff+len(pix)))
	out = le.AppendUint32(out, 0)
	out = le.AppendUint32(out, uint32(newOff))
	out = le.AppendUint32(out, 40)
	out = le.AppendUint32(out, uint32(w))
	out = le.AppendUint32(out, uint32(h))
	out = le.AppendUint16(out, 1)
	out = le.AppendUint16(out, uint16(bpp))
	out = le.AppendUint32(out, 0) // BI_RGB
	out = le.AppendUint32(out, uint32(len(pix)))
	out = le.AppendUint32(out, 2835) // 72 dpi
	out = le.AppendUint32(out, 2835)
	out = le.AppendUint32(out, uint32(n))
	out = le.AppendUint32(out, 0)
	for i := 0; i < n; i++ {
		e := b[26+3*i:]
		out = append(out, e[0], e[1], e[2], 0)
	}
	return append(out, pix...), true, nil
}
