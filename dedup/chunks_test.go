package dedup

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"testing"
)

func testRef(b byte, size int64) Ref {
	var r Ref
	for i := range r.Locator {
		r.Locator[i] = b + byte(i)
	}
	r.Key = bytes.Repeat([]byte{b ^ 0xff}, 32)
	r.Size = size
	return r
}

func TestContentValue(t *testing.T) {
	a, b := testRef(1, 5<<20), testRef(2, 77)
	c := NewContent(a, b)
	if c != NewContent(a).Append(b) || c == NewContent(b, a) || c == NewContent(a) {
		t.Fatal("== does not compare chunk lists")
	}
	if c.Len() != 2 || c.Size() != 5<<20+77 || c.Chunk(1).Locator != b.Locator || !bytes.Equal(c.Chunk(0).Key, a.Key) {
		t.Fatalf("accessors: %d chunks, %d bytes", c.Len(), c.Size())
	}
	if o := c.Offsets(); len(o) != 3 || o[1] != 5<<20 || o[2] != c.Size() {
		t.Fatalf("offsets %v", o)
	}
	if c.Slice(1, 2) != NewContent(b) {
		t.Fatal("Slice")
	}
	if NewContent(a).ID() != a.Locator || c.ID() == a.Locator || c.ID() == NewContent(b, a).ID() {
		t.Fatal("ID: one chunk is its locator; lists differ by order")
	}
	// No key reaches any printed form.
	key := hex.EncodeToString(a.Key)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v %#v %x %q", c, c, c, c), fmt.Sprintf("%v", struct{ C Content }{c})} {
		if bytes.Contains([]byte(s), a.Key) || bytes.Contains([]byte(s), []byte(key)) {
			t.Fatalf("key printed: %s", s)
		}
	}
}

// TestContentEncoding: round trip, canonical form, the v1 one-chunk layout, and a
// known-answer vector.
func TestContentEncoding(t *testing.T) {
	a, b := testRef(1, 5<<20), testRef(2, 77)
	for _, c := range []Content{{}, NewContent(a), NewContent(a, b), NewContent(testRef(3, 0))} {
		enc := c.AppendBinary(nil)
		got, n, err := DecodeContent(append(enc, 0xee))
		if err != nil || n != len(enc) || got != c {
			t.Fatalf("%v: round trip gave %v, %d, %v", c, got, n, err)
		}
	}
	// The v1 inode layout: 1 || loc || key || zigzag varint(size).
	v1 := append(append(append([]byte{1}, a.Locator[:]...), a.Key...), binary.AppendVarint(nil, a.Size)...)
	if !bytes.Equal(NewContent(a).AppendBinary(nil), v1) {
		t.Fatal("a one-chunk list is not the v1 layout")
	}
	const want = "0202" + "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20" + "fefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefe" + "80808005" +
		"02030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021" + "fdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfdfd" + "9a01"
	if got := hex.EncodeToString(NewContent(a, b).AppendBinary(nil)); got != want {
		t.Fatalf("known answer:\n got %s\nwant %s", got, want)
	}
	bad := map[string][]byte{
		"empty":            nil,
		"tag 3":            {3},
		"list of one":      append([]byte{2, 1}, NewContent(a).AppendBinary(nil)[1:]...),
		"zero-size middle": NewContent(testRef(3, 0), b).AppendBinary(nil),
		"negative size":    append(append(append([]byte{1}, a.Locator[:]...), a.Key...), binary.AppendVarint(nil, -1)...),
		"short":            NewContent(a, b).AppendBinary(nil)[:100],
		"huge count":       {2, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"non-minimal n":    append([]byte{2, 0x82, 0x00}, NewContent(a, b).AppendBinary(nil)[2:]...),
	}
	for name, enc := range bad {
		if _, _, err := DecodeContent(enc); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzDecodeContent: the chunk-list decoder never panics, and what it accepts is canonical
// (re-encodes to the same bytes).
func FuzzDecodeContent(f *testing.F) {
	f.Add(NewContent(testRef(1, 5), testRef(2, 6)).AppendBinary(nil))
	f.Add(NewContent(testRef(1, 5)).AppendBinary(nil))
	f.Add(Content{}.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, n, err := DecodeContent(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.AppendBinary(nil), b[:n]) {
			t.Fatalf("accepted a non-canonical encoding %x", b[:n])
		}
	})
}
