package dedup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

func roundTripSizes() []int {
	s := []int{0, 1, 15, 16, 17, segSize - 1, segSize, segSize + 1,
		segSize - 16 - 1, segSize - 16, segSize - 16 + 1, 2*segSize - 16, 2*segSize - 17, 2*segSize - 15}
	for _, k := range []int{5, 10, 12, 17, 18, 20, 22} {
		s = append(s, 1<<k-1, 1<<k, 1<<k+1)
	}
	return s
}

func TestRoundTripSizes(t *testing.T) {
	cs := testCS(7)
	for _, n := range roundTripSizes() {
		p := randBytes(uint64(n), n)
		obj, ref := sealBytes(t, cs, p)
		if int64(len(obj)) != ObjectSize(int64(n)) {
			t.Fatalf("size %d: object %d bytes, ObjectSize says %d", n, len(obj), ObjectSize(int64(n)))
		}
		if ref.Size != int64(n) || Hash(obj) != ref.Locator {
			t.Fatalf("size %d: bad ref", n)
		}
		got, err := Open(ref, obj)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("size %d: Open: err=%v equal=%v", n, err, bytes.Equal(got, p))
		}
		ra, err := OpenReader(ref, bytes.NewReader(obj), int64(len(obj)))
		if err != nil {
			t.Fatalf("size %d: OpenReader: %v", n, err)
		}
		all, err := io.ReadAll(io.NewSectionReader(ra, 0, int64(n)+10))
		if err != nil || !bytes.Equal(all, p) {
			t.Fatalf("size %d: sequential read: err=%v equal=%v", n, err, bytes.Equal(all, p))
		}
		// Random-ish windows.
		for _, w := range [][2]int{{0, 1}, {n / 3, 7}, {n - 1, 1}, {max(0, n-segSize-5), segSize + 10}} {
			off, l := w[0], w[1]
			if off < 0 || off >= n {
				continue
			}
			buf := make([]byte, l)
			k, err := ra.ReadAt(buf, int64(off))
			want := p[off:min(n, off+l)]
			if k != len(want) || !bytes.Equal(buf[:k], want) {
				t.Fatalf("size %d: ReadAt(%d,%d) = %d, %v", n, off, l, k, err)
			}
			if k < l && err != io.EOF {
				t.Fatalf("size %d: short ReadAt without EOF: %v", n, err)
			}
		}
	}
}

func TestDeterministicAndKeyed(t *testing.T) {
	p := randBytes(1, 100_000)
	a, ra := sealBytes(t, testCS(1), p)
	b, rb := sealBytes(t, testCS(1), p)
	if !bytes.Equal(a, b) || ra.Locator != rb.Locator {
		t.Fatal("same CS and plaintext gave different objects")
	}
	c, rc := sealBytes(t, testCS(2), p)
	if rc.Locator == ra.Locator || bytes.Equal(a[contentStart:], c[contentStart:]) {
		t.Fatal("different CS gave the same object")
	}
	q := bytes.Clone(p)
	q[len(q)/2] ^= 1
	_, rq := sealBytes(t, testCS(1), q)
	if rq.Locator == ra.Locator || bytes.Equal(rq.Key, ra.Key) {
		t.Fatal("one changed byte kept the locator or key")
	}
}

func TestSealErrors(t *testing.T) {
	var buf bytes.Buffer
	if _, err := Seal(testCS(1)[:31], bytes.NewReader(nil), 0, &buf); err == nil {
		t.Error("short CS accepted")
	}
	if _, err := Seal(testCS(1), bytes.NewReader(make([]byte, 10)), 11, &buf); err == nil {
		t.Error("short source accepted")
	}
	if _, err := Seal(testCS(1), bytes.NewReader(nil), -1, &buf); err == nil {
		t.Error("negative size accepted")
	}
}

// changingReader returns different bytes on the second pass.
type changingReader struct {
	data  []byte
	reads int
}

func (c *changingReader) ReadAt(p []byte, off int64) (int, error) {
	c.reads++
	n := copy(p, c.data[off:])
	if off == 0 && c.reads > 1 {
		p[0] ^= 0xff
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestSealDetectsChangingSource(t *testing.T) {
	src := &changingReader{data: randBytes(3, 1000)}
	_, err := Seal(testCS(1), src, 1000, io.Discard)
	if err == nil {
		t.Fatal("source changed between passes but Seal succeeded")
	}
}

func TestOpenErrorsMatchErrCorrupt(t *testing.T) {
	p := randBytes(4, 3000)
	obj, ref := sealBytes(t, testCS(1), p)
	bad := bytes.Clone(obj)
	bad[len(bad)-1] ^= 1
	_, err := Open(ref, bad)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
	if s := fmt.Sprint(err); bytes.Contains([]byte(s), ref.Key) {
		t.Fatal("key in error")
	}
}
