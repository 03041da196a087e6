package imgdecode

import (
	"bytes"
	"encoding/binary"
)

// Orientation returns the EXIF orientation (1..8) recorded in an encoded image: the JPEG
// APP1 "Exif" segment, the PNG eXIf chunk, the WebP EXIF chunk or a TIFF file's own first
// directory. 1 (upright) when there is none or it is malformed. Only the bytes before the
// image data are examined, with every offset bounds-checked.
func Orientation(b []byte) int {
	switch Sniff(b) {
	case "jpeg":
		return jpegOrientation(b)
	case "png":
		return pngOrientation(b)
	case "webp":
		return webpOrientation(b)
	case "tiff":
		return tiffOrientation(b)
	}
	return 1
}

func jpegOrientation(b []byte) int {
	i := 2 // after SOI
	for i+4 <= len(b) {
		if b[i] != 0xFF {
			return 1
		}
		m := b[i+1]
		if m == 0xFF { // fill byte
			i++
			continue
		}
		if m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7) { // no length
			i += 2
			continue
		}
		if m == 0xDA || m == 0xD9 { // start of scan, end of image: no EXIF before
			return 1
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return 1
		}
		seg := b[i+4 : i+2+n]
		if m == 0xE1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return tiffOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1
}

func pngOrientation(b []byte) int {
	i := 8
	for i+12 <= len(b) {
		n := int(binary.BigEndian.Uint32(b[i:]))
		typ := string(b[i+4 : i+8])
		if n < 0 || n > len(b)-i-12 {
			return 1
		}
		switch typ {
		case "eXIf":
			return tiffOrientation(b[i+8 : i+8+n])
		case "IDAT", "IEND":
			return 1
		}
		i += 12 + n
	}
	return 1
}

func webpOrientation(b []byte) int {
	i := 12
	for i+8 <= len(b) {
		n := int(binary.LittleEndian.Uint32(b[i+4:]))
		if n < 0 || n > len(b)-i-8 {
			return 1
		}
		if string(b[i:i+4]) == "EXIF" {
			d := b[i+8 : i+8+n]
			// Some writers keep the JPEG-style "Exif\0\0" prefix.
			d = bytes.TrimPrefix(d, []byte("Exif\x00\x00"))
			return tiffOrientation(d)
		}
		i += 8 + n + n&1
	}
	return 1
}

// tiffOrientation reads tag 0x0112 (Orientation, SHORT) from the first IFD of a TIFF
// structure (an EXIF payload or a TIFF file).
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(t[2:]) != 42 {
		return 1
	}
	off := uint64(bo.Uint32(t[4:]))
	if off < 8 || off+2 > uint64(len(t)) {
		return 1
	}
	n := uint64(bo.Uint16(t[off:]))
	for k := uint64(0); k < n; k++ {
		e := off + 2 + 12*k
		if e+12 > uint64(len(t)) {
			return 1
		}
		tag, typ, count := bo.Uint16(t[e:]), bo.Uint16(t[e+2:]), bo.Uint32(t[e+4:])
		if tag != 0x0112 {
			continue
		}
		if typ != 3 || count != 1 { // SHORT, one value, stored in the entry
			return 1
		}
		if v := int(bo.Uint16(t[e+8:])); v >= 1 && v <= 8 {
			return v
		}
		return 1
	}
	return 1
}
