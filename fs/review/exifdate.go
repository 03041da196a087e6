package review

import (
	"bytes"
	"encoding/binary"
)

// DateTaken returns the EXIF date a photo was taken ("2006-01-02 15:04:05"), from
// DateTimeOriginal (tag 0x9003 of the Exif IFD), else DateTime (0x0132 of IFD0); "" when
// there is none or it is malformed. b is the start of a JPEG (its APP1 "Exif" segment) or
// a TIFF file. Every offset is bounds-checked: b comes from the user's files.
func DateTaken(b []byte) string {
	switch {
	case len(b) >= 2 && b[0] == 0xFF && b[1] == 0xD8:
		if t := jpegExif(b); t != nil {
			return tiffDate(t)
		}
	case bytes.HasPrefix(b, []byte("II*\x00")), bytes.HasPrefix(b, []byte("MM\x00*")):
		return tiffDate(b)
	}
	return ""
}

// jpegExif returns the TIFF structure of a JPEG's APP1 Exif segment, or nil.
func jpegExif(b []byte) []byte {
	i := 2
	for i+4 <= len(b) {
		if b[i] != 0xFF {
			return nil
		}
		m := b[i+1]
		if m == 0xFF {
			i++
			continue
		}
		if m == 0x01 || (m >= 0xD0 && m <= 0xD8) {
			i += 2
			continue
		}
		if m == 0xDA || m == 0xD9 {
			return nil
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return nil
		}
		seg := b[i+4 : i+2+n]
		if m == 0xE1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return seg[6:]
		}
		i += 2 + n
	}
	return nil
}

type tiffReader struct {
	t  []byte
	bo binary.ByteOrder
}

// ifdTag finds tag in the IFD at off: its type, count and value/offset field position.
func (r tiffReader) ifdTag(off uint64, tag uint16) (typ uint16, count uint32, field uint64, ok bool) {
	if off < 8 || off+2 > uint64(len(r.t)) {
		return 0, 0, 0, false
	}
	n := uint64(r.bo.Uint16(r.t[off:]))
	for k := uint64(0); k < n; k++ {
		e := off + 2 + 12*k
		if e+12 > uint64(len(r.t)) {
			return 0, 0, 0, false
		}
		if r.bo.Uint16(r.t[e:]) == tag {
			return r.bo.Uint16(r.t[e+2:]), r.bo.Uint32(r.t[e+4:]), e + 8, true
		}
	}
	return 0, 0, 0, false
}

// ascii reads an EXIF date (ASCII, "YYYY:MM:DD HH:MM:SS") at the tag found by ifdTag.
func (r tiffReader) date(off uint64, tag uint16) string {
	typ, count, field, ok := r.ifdTag(off, tag)
	if !ok || typ != 2 || count < 19 || count > 64 {
		return ""
	}
	p := uint64(r.bo.Uint32(r.t[field:])) // count > 4: the value is elsewhere
	if p+19 > uint64(len(r.t)) {
		return ""
	}
	return formatExifDate(r.t[p : p+19])
}

func tiffDate(t []byte) string {
	if len(t) < 8 {
		return ""
	}
	r := tiffReader{t: t}
	switch string(t[:2]) {
	case "II":
		r.bo = binary.LittleEndian
	case "MM":
		r.bo = binary.BigEndian
	default:
		return ""
	}
	if r.bo.Uint16(t[2:]) != 42 {
		return ""
	}
	ifd0 := uint64(r.bo.Uint32(t[4:]))
	if typ, count, field, ok := r.ifdTag(ifd0, 0x8769); ok && (typ == 4 || typ == 13) && count == 1 {
		if d := r.date(uint64(r.bo.Uint32(t[field:])), 0x9003); d != "" {
			return d
		}
	}
	return r.date(ifd0, 0x0132)
}

// formatExifDate checks "YYYY:MM:DD HH:MM:SS" and returns "YYYY-MM-DD HH:MM:SS".
func formatExifDate(s []byte) string {
	const pat = "dddd:dd:dd dd:dd:dd"
	out := make([]byte, len(pat))
	for i := range pat {
		c := s[i]
		switch pat[i] {
		case 'd':
			if c < '0' || c > '9' {
				return ""
			}
		default:
			if c != pat[i] {
				return ""
			}
		}
		out[i] = c
	}
	if string(out[:4]) == "0000" {
		return "" // "0000:00:00 00:00:00": no date set
	}
	out[4], out[7] = '-', '-'
	return string(out)
}
