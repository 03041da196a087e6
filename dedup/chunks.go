package dedup

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Content is a file's content in format v2 (docs/format.md §11): an ordered list of chunks,
// each one content object (§5). A v1 file is a one-chunk Content. The zero value is the
// empty file. Content is an immutable value: == compares two lists entry by entry.
//
// An entry may also be a piece (§11.4): bytes [off, off+len) of a content object that is not
// a content-defined chunk at its place (a slice of a chunk an edit split, or a small patch
// object holding the edited bytes). Pieces let an fsync store only what changed; a
// background compaction re-chunks them into chunks.
//
// It holds content keys, so it prints (every fmt verb, JSON, text) without them.
type Content struct {
	s string // n entries: locator(32) || K_c(32) || u64be(object size) || u64be(off) || u64be(len) || u8(piece)
}

const chunkEntry = 32 + 32 + 8 + 8 + 8 + 1

// MaxChunks bounds a chunk list (1 TiB in chunks of at least ChunkMin, and v1 files).
const MaxChunks = MaxPlainSize/ChunkMin + 1

// MaxEntries bounds a list with pieces (the decoder's limit; the writer keeps far fewer).
const MaxEntries = MaxChunks

// NewContent builds a Content from its chunks in file order.
func NewContent(chunks ...Ref) Content {
	b := make([]byte, 0, len(chunks)*chunkEntry)
	for _, r := range chunks {
		b = appendEntry(b, r, 0, r.Size, false)
	}
	return Content{s: string(b)}
}

func appendEntry(b []byte, r Ref, off, n int64, piece bool) []byte {
	b = append(b, r.Locator[:]...)
	var k [32]byte
	copy(k[:], r.Key)
	b = append(b, k[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Size))
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	b = binary.BigEndian.AppendUint64(b, uint64(n))
	if piece {
		return append(b, 1)
	}
	return append(b, 0)
}

// Append returns c followed by more chunks.
func (c Content) Append(chunks ...Ref) Content {
	b := []byte(c.s)
	for _, r := range chunks {
		b = appendEntry(b, r, 0, r.Size, false)
	}
	return Content{s: string(b)}
}

// AppendPiece returns c followed by a piece: bytes [off, off+n) of object r.
func (c Content) AppendPiece(r Ref, off, n int64) Content {
	return Content{s: string(appendEntry([]byte(c.s), r, off, n, true))}
}

// AppendContent returns c followed by the entries of d.
func (c Content) AppendContent(d Content) Content { return Content{s: c.s + d.s} }

// Slice returns entries [i, j) of c.
func (c Content) Slice(i, j int) Content { return Content{s: c.s[i*chunkEntry : j*chunkEntry]} }

// Range returns the entries that hold bytes [lo, hi) of the file, the first and last cut to
// the range (a cut entry is a piece).
func (c Content) Range(lo, hi int64) Content {
	var b []byte
	pos := int64(0)
	for i := range c.Len() {
		n := c.ChunkSize(i)
		a, z := max(lo, pos), min(hi, pos+n)
		if a < z {
			if a == pos && z == pos+n {
				b = append(b, c.s[i*chunkEntry:(i+1)*chunkEntry]...)
			} else {
				b = appendEntry(b, c.Chunk(i), c.ChunkOffset(i)+a-pos, z-a, true)
			}
		}
		pos += n
		if pos >= hi {
			break
		}
	}
	return Content{s: string(b)}
}

// Len is the number of entries (chunks and pieces).
func (c Content) Len() int { return len(c.s) / chunkEntry }

// Chunk returns the object of entry i (Size is the object's plaintext size; a piece uses
// only ChunkSize(i) bytes of it from ChunkOffset(i)).
func (c Content) Chunk(i int) Ref {
	e := c.s[i*chunkEntry : (i+1)*chunkEntry]
	var r Ref
	copy(r.Locator[:], e[:32])
	r.Key = []byte(e[32:64])
	r.Size = int64(binary.BigEndian.Uint64([]byte(e[64:72])))
	return r
}

// ChunkLocator returns the locator of entry i's object (no key copied).
func (c Content) ChunkLocator(i int) Locator {
	return Locator([]byte(c.s[i*chunkEntry : i*chunkEntry+32]))
}

// ChunkSize returns the number of file bytes entry i holds (the chunk size for a chunk).
func (c Content) ChunkSize(i int) int64 {
	return int64(binary.BigEndian.Uint64([]byte(c.s[i*chunkEntry+80 : i*chunkEntry+88])))
}

// ChunkOffset returns where entry i's bytes start in its object (0 for a chunk).
func (c Content) ChunkOffset(i int) int64 {
	return int64(binary.BigEndian.Uint64([]byte(c.s[i*chunkEntry+72 : i*chunkEntry+80])))
}

// IsPiece reports whether entry i is a piece rather than a content-defined chunk.
func (c Content) IsPiece(i int) bool { return c.s[(i+1)*chunkEntry-1] == 1 }

// Pieces is the number of pieces.
func (c Content) Pieces() int {
	n := 0
	for i := range c.Len() {
		if c.IsPiece(i) {
			n++
		}
	}
	return n
}

// Size is the file size: the sum of the entry sizes.
func (c Content) Size() int64 {
	var n int64
	for i := range c.Len() {
		n += c.ChunkSize(i)
	}
	return n
}

// Offsets returns the start of every entry and, last, the file size (Len()+1 values).
func (c Content) Offsets() []int64 {
	out := make([]int64, c.Len()+1)
	for i := range c.Len() {
		out[i+1] = out[i] + c.ChunkSize(i)
	}
	return out
}

// ID names the bytes of the file: the locator itself for a one-chunk file (as in v1), else
// SHA-256("imgfs v2 content id" || the locators and sizes); a list with pieces hashes
// "imgfs v2 content id pieces" || per entry locator || u64be(object size) || u64be(off) ||
// u64be(len) || u8(piece). The chunker is deterministic, so equal bytes written the same
// way give equal IDs within a vault (a compacted file gets its chunk-list ID back).
func (c Content) ID() Locator {
	if c.Len() == 1 && !c.IsPiece(0) {
		return c.ChunkLocator(0)
	}
	h := sha256.New()
	if c.Pieces() > 0 {
		io.WriteString(h, "imgfs v2 content id pieces")
		for i := range c.Len() {
			e := c.s[i*chunkEntry : (i+1)*chunkEntry]
			h.Write([]byte(e[:32]))
			h.Write([]byte(e[64:]))
		}
		return Locator(h.Sum(nil))
	}
	io.WriteString(h, "imgfs v2 content id")
	for i := range c.Len() {
		h.Write([]byte(c.s[i*chunkEntry : i*chunkEntry+32]))
		binary.Write(h, binary.BigEndian, uint64(c.ChunkSize(i)))
	}
	return Locator(h.Sum(nil))
}

func (c Content) String() string {
	if c.Len() == 1 && !c.IsPiece(0) {
		return fmt.Sprintf("content(%s, %d bytes)", c.ChunkLocator(0), c.ChunkSize(0))
	}
	if p := c.Pieces(); p > 0 {
		return fmt.Sprintf("content(%d chunks, %d pieces, %d bytes)", c.Len()-p, p, c.Size())
	}
	return fmt.Sprintf("content(%d chunks, %d bytes)", c.Len(), c.Size())
}

func (c Content) GoString() string                    { return c.String() }
func (c Content) Format(f fmt.State, verb rune)       { io.WriteString(f, c.String()) }
func (c Content) MarshalJSON() ([]byte, error)        { return []byte(`"` + c.String() + `"`), nil }
func (c Content) MarshalText() (text []byte, e error) { return []byte(c.String()), nil }

// Encoding of a chunk list inside stored metadata (fs/core inode records and tree objects):
//
//	one chunk:   0x01 locator(32) K_c(32) varint(size)        (the v1 inode layout)
//	chunks only: 0x02 uvarint(n) n × { locator(32) K_c(32) varint(size) },  n = 0 or n ≥ 2
//	with pieces: 0x03 uvarint(n) n × { locator(32) K_c(32) varint(object size)
//	                                   uvarint(off) uvarint(len) u8(piece) },  n ≥ 1
//
// varint is Go's zigzag varint (as in v1); every integer must be minimally encoded.
//
// Every chunk but a last one has size ≥ 1; canonical: one encoding per list (0x03 only when
// at least one entry is a piece; a chunk entry in it has off = 0 and len = object size; a
// piece has len ≥ 1 and off + len ≤ object size).

var errBadContent = errors.New("dedup: malformed chunk list")

// AppendBinary appends the encoding of c.
func (c Content) AppendBinary(b []byte) []byte {
	n := c.Len()
	pieces := c.Pieces() > 0
	switch {
	case pieces:
		b = append(b, 3)
		b = binary.AppendUvarint(b, uint64(n))
	case n == 1:
		b = append(b, 1)
	default:
		b = append(b, 2)
		b = binary.AppendUvarint(b, uint64(n))
	}
	for i := range n {
		e := c.s[i*chunkEntry : (i+1)*chunkEntry]
		b = append(b, e[:64]...)
		if !pieces {
			b = binary.AppendVarint(b, c.ChunkSize(i))
			continue
		}
		b = binary.AppendVarint(b, c.Chunk(i).Size)
		b = binary.AppendUvarint(b, uint64(c.ChunkOffset(i)))
		b = binary.AppendUvarint(b, uint64(c.ChunkSize(i)))
		b = append(b, e[chunkEntry-1])
	}
	return b
}

// uvarintMin reads a minimally encoded uvarint.
func uvarintMin(b []byte) (uint64, int, bool) {
	v, k := binary.Uvarint(b)
	return v, k, k > 0 && k == len(binary.AppendUvarint(nil, v))
}

// DecodeContent parses one encoded chunk list at the start of b and returns it and the
// number of bytes it took (fuzzed by FuzzDecodeContent).
func DecodeContent(b []byte) (Content, int, error) {
	if len(b) < 1 {
		return Content{}, 0, errBadContent
	}
	p := 1
	var n uint64
	tag := b[0]
	switch tag {
	case 1:
		n = 1
	case 2, 3:
		v, k, ok := uvarintMin(b[p:])
		entry := uint64(64 + 1)
		if tag == 3 {
			entry = 64 + 4
		}
		if !ok || (tag == 2 && v == 1) || (tag == 3 && v == 0) || v > MaxEntries || v > uint64(len(b)-p-k)/entry {
			return Content{}, 0, errBadContent
		}
		n, p = v, p+k
	default:
		return Content{}, 0, errBadContent
	}
	out := make([]byte, 0, int(n)*chunkEntry)
	var total uint64
	pieces := 0
	for i := uint64(0); i < n; i++ {
		if len(b)-p < 64 {
			return Content{}, 0, errBadContent
		}
		var r Ref
		copy(r.Locator[:], b[p:p+32])
		r.Key = b[p+32 : p+64]
		p += 64
		sz, k := binary.Varint(b[p:])
		if k <= 0 || sz < 0 || sz > MaxPlainSize || (sz == 0 && n > 1) {
			return Content{}, 0, errBadContent
		}
		if k != len(binary.AppendVarint(nil, sz)) { // non-minimal varint: not canonical
			return Content{}, 0, errBadContent
		}
		p += k
		r.Size = sz
		off, ln, piece := int64(0), sz, false
		if tag == 3 {
			o, k1, ok1 := uvarintMin(b[p:])
			if !ok1 {
				return Content{}, 0, errBadContent
			}
			p += k1
			l, k2, ok2 := uvarintMin(b[p:])
			if !ok2 || p+k2 >= len(b) {
				return Content{}, 0, errBadContent
			}
			p += k2
			kind := b[p]
			p++
			if kind > 1 || l < 1 || o > uint64(sz) || l > uint64(sz)-o ||
				(kind == 0 && (o != 0 || l != uint64(sz))) {
				return Content{}, 0, errBadContent
			}
			off, ln, piece = int64(o), int64(l), kind == 1
			if piece {
				pieces++
			}
		}
		total += uint64(ln)
		if total > MaxPlainSize {
			return Content{}, 0, errBadContent
		}
		out = appendEntry(out, r, off, ln, piece)
	}
	if tag == 3 && pieces == 0 {
		return Content{}, 0, errBadContent
	}
	return Content{s: string(out)}, p, nil
}

// Chunks returns the objects of the entries in order (for whole chunks: the chunks).
func (c Content) Chunks() []Ref {
	out := make([]Ref, c.Len())
	for i := range out {
		out[i] = c.Chunk(i)
	}
	return out
}
