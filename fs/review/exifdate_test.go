package review

import (
	"encoding/binary"
	"testing"
)

// exifJPEG builds a JPEG prefix with an APP1 Exif segment holding IFD0 DateTime and an Exif
// IFD with DateTimeOriginal (little- or big-endian).
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

func exifJPEG(bo byteOrder, dateTime, original string) []byte {
	t := make([]byte, 0, 256)
	if bo == binary.LittleEndian {
		t = append(t, "II*\x00"...)
	} else {
		t = append(t, "MM\x00*"...)
	}
	t = bo.AppendUint32(t, 8)
	// IFD0 at 8: two entries (DateTime, ExifIFD pointer), next IFD 0.
	const ifd0, exifIFD, strs = 8, 8 + 2 + 2*12 + 4, 8 + 2 + 2*12 + 4 + 2 + 12 + 4
	t = bo.AppendUint16(t, 2)
	t = bo.AppendUint16(t, 0x0132)
	t = bo.AppendUint16(t, 2)
	t = bo.AppendUint32(t, 20)
	t = bo.AppendUint32(t, strs)
	t = bo.AppendUint16(t, 0x8769)
	t = bo.AppendUint16(t, 4)
	t = bo.AppendUint32(t, 1)
	t = bo.AppendUint32(t, exifIFD)
	t = bo.AppendUint32(t, 0)
	t = bo.AppendUint16(t, 1)
	t = bo.AppendUint16(t, 0x9003)
	t = bo.AppendUint16(t, 2)
	t = bo.AppendUint32(t, 20)
	t = bo.AppendUint32(t, strs+20)
	t = bo.AppendUint32(t, 0)
	t = append(t, dateTime+"\x00"...)
	t = append(t, original+"\x00"...)
	seg := append([]byte("Exif\x00\x00"), t...)
	b := []byte{0xFF, 0xD8, 0xFF, 0xE1}
	b = binary.BigEndian.AppendUint16(b, uint16(len(seg)+2))
	b = append(b, seg...)
	return append(b, 0xFF, 0xDA, 0, 2)
}

func TestDateTaken(t *testing.T) {
	for _, bo := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
		b := exifJPEG(bo, "2020:01:02 03:04:05", "2019:12:31 23:59:58")
		if got := DateTaken(b); got != "2019-12-31 23:59:58" {
			t.Errorf("%v: DateTaken = %q", bo, got)
		}
		// No original date: DateTime.
		b = exifJPEG(bo, "2020:01:02 03:04:05", "0000:00:00 00:00:00")
		if got := DateTaken(b); got != "2020-01-02 03:04:05" {
			t.Errorf("%v: fallback = %q", bo, got)
		}
		// Truncated anywhere: never a panic, "" or a date.
		for n := 0; n < len(b); n++ {
			DateTaken(b[:n])
		}
	}
	if got := DateTaken([]byte("not an image")); got != "" {
		t.Errorf("text: %q", got)
	}
}

func FuzzDateTaken(f *testing.F) {
	f.Add(exifJPEG(binary.LittleEndian, "2020:01:02 03:04:05", "2019:12:31 23:59:58"))
	f.Add(exifJPEG(binary.BigEndian, "2020:01:02 03:04:05", "2019:12:31 23:59:58"))
	f.Add([]byte("II*\x00\x08\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := DateTaken(b)
		if d != "" && len(d) != 19 {
			t.Fatalf("DateTaken = %q", d)
		}
	})
}
