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

// TestContentPieces: Range cuts entries into pieces, a list with pieces encodes as tag 3
// (known answer), round-trips, and every non-canonical or inconsistent form is refused.
func TestContentPieces(t *testing.T) {
	a, b, p := testRef(1, 5<<20), testRef(2, 77), testRef(4, 100)
	c := NewContent(a, b)
	if r := c.Range(0, c.Size()); r != c || r.Pieces() != 0 {
		t.Fatalf("whole range: %v", r)
	}
	// Cut a at 1000 and 5000, put p in between: [a 0..1000) [p] [a 5000..) [b].
	edited := c.Range(0, 1000).AppendPiece(p, 0, 100).AppendContent(c.Range(5000, c.Size()))
	if edited.Len() != 4 || edited.Pieces() != 3 || edited.IsPiece(3) || edited.Size() != 5<<20-4000+100+77 {
		t.Fatalf("edited: %v", edited)
	}
	if edited.ChunkOffset(2) != 5000 || edited.ChunkSize(2) != 5<<20-5000 || edited.Chunk(2).Size != 5<<20 || edited.Chunk(2).Locator != a.Locator {
		t.Fatalf("piece 2: off %d len %d object %d", edited.ChunkOffset(2), edited.ChunkSize(2), edited.Chunk(2).Size)
	}
	if r := edited.Range(500, 1050); r.Len() != 2 || r.ChunkOffset(0) != 500 || r.ChunkSize(0) != 500 || r.ChunkSize(1) != 50 {
		t.Fatalf("range of pieces: %v", r)
	}
	if edited.ID() == c.ID() || edited.ID() == edited.Range(0, 1000).AppendPiece(p, 0, 99).AppendContent(c.Range(5000, c.Size())).ID() {
		t.Fatal("ID ignores pieces")
	}
	enc := edited.AppendBinary(nil)
	got, n, err := DecodeContent(append(enc, 0xee))
	if err != nil || n != len(enc) || got != edited {
		t.Fatalf("round trip: %v, %d, %v", got, n, err)
	}
	one := NewContent().AppendPiece(p, 10, 20)
	const want = "0301" + "0405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223" +
		"fbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfbfb" + "c801" + "0a" + "14" + "01"
	if got := hex.EncodeToString(one.AppendBinary(nil)); got != want {
		t.Fatalf("known answer:\n got %s\nwant %s", got, want)
	}
	entry := func(r Ref, off, ln uint64, kind byte) []byte {
		e := append(append([]byte{}, r.Locator[:]...), r.Key...)
		e = binary.AppendVarint(e, r.Size)
		e = binary.AppendUvarint(binary.AppendUvarint(e, off), ln)
		return append(e, kind)
	}
	list := func(es ...[]byte) []byte {
		b := binary.AppendUvarint([]byte{3}, uint64(len(es)))
		for _, e := range es {
			b = append(b, e...)
		}
		return b
	}
	if _, _, err := DecodeContent(list(entry(a, 0, 5<<20, 0), entry(p, 0, 100, 1))); err != nil {
		t.Fatalf("a chunk and a piece: %v", err)
	}
	bad := map[string][]byte{
		"no piece":          list(entry(a, 0, 5<<20, 0), entry(b, 0, 77, 0)),
		"zero entries":      {3, 0},
		"kind 2":            list(entry(p, 0, 100, 2)),
		"chunk with offset": list(entry(a, 1, 5<<20-1, 0), entry(p, 0, 100, 1)),
		"short chunk":       list(entry(a, 0, 5<<20-1, 0), entry(p, 0, 100, 1)),
		"empty piece":       list(entry(p, 10, 0, 1)),
		"past the object":   list(entry(p, 90, 11, 1)),
		"offset past":       list(entry(p, 101, 1, 1)),
		"non-minimal off":   append(list(entry(p, 0, 0, 1))[:2+64+2], 0x80, 0x00, 0x14, 0x01),
		"truncated":         list(entry(p, 10, 20, 1))[:2+64+3],
		"huge count":        {3, 0xff, 0xff, 0xff, 0xff, 0x0f},
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
	f.Add(NewContent(testRef(1, 5)).AppendPiece(testRef(2, 9), 3, 4).AppendBinary(nil))
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
