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
// empty file. Content is an immutable value: == compares two lists chunk by chunk.
//
// It holds content keys, so it prints (every fmt verb, JSON, text) without them.
type Content struct {
	s string // n entries of chunkEntry bytes: locator(32) || K_c(32) || u64be(size)
}

const chunkEntry = 32 + 32 + 8

// MaxChunks bounds a chunk list (1 TiB in chunks of at least ChunkMin, and v1 files).
const MaxChunks = MaxPlainSize/ChunkMin + 1

// NewContent builds a Content from its chunks in file order.
func NewContent(chunks ...Ref) Content {
	b := make([]byte, 0, len(chunks)*chunkEntry)
	for _, r := range chunks {
		b = appendChunk(b, r)
	}
	return Content{s: string(b)}
}

func appendChunk(b []byte, r Ref) []byte {
	b = append(b, r.Locator[:]...)
	var k [32]byte
	copy(k[:], r.Key)
	b = append(b, k[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(r.Size))
}

// Append returns c followed by more chunks.
func (c Content) Append(chunks ...Ref) Content {
	b := []byte(c.s)
	for _, r := range chunks {
		b = appendChunk(b, r)
	}
	return Content{s: string(b)}
}

// Slice returns chunks [i, j) of c.
func (c Content) Slice(i, j int) Content { return Content{s: c.s[i*chunkEntry : j*chunkEntry]} }

// Len is the number of chunks.
func (c Content) Len() int { return len(c.s) / chunkEntry }

// Chunk returns chunk i.
func (c Content) Chunk(i int) Ref {
	e := c.s[i*chunkEntry : (i+1)*chunkEntry]
	var r Ref
	copy(r.Locator[:], e[:32])
	r.Key = []byte(e[32:64])
	r.Size = int64(binary.BigEndian.Uint64([]byte(e[64:72])))
	return r
}

// ChunkLocator returns the locator of chunk i (no key copied).
func (c Content) ChunkLocator(i int) Locator {
	return Locator([]byte(c.s[i*chunkEntry : i*chunkEntry+32]))
}

// ChunkSize returns the plaintext size of chunk i.
func (c Content) ChunkSize(i int) int64 {
	return int64(binary.BigEndian.Uint64([]byte(c.s[i*chunkEntry+64 : (i+1)*chunkEntry])))
}

// Size is the file size: the sum of the chunk sizes.
func (c Content) Size() int64 {
	var n int64
	for i := range c.Len() {
		n += c.ChunkSize(i)
	}
	return n
}

// Offsets returns the start of every chunk and, last, the file size (Len()+1 values).
func (c Content) Offsets() []int64 {
	out := make([]int64, c.Len()+1)
	for i := range c.Len() {
		out[i+1] = out[i] + c.ChunkSize(i)
	}
	return out
}

// ID names the bytes of the file: the locator itself for a one-chunk file (as in v1), else
// SHA-256("imgfs v2 content id" || the locators and sizes). The chunker is deterministic,
// so equal bytes give equal IDs within a vault.
func (c Content) ID() Locator {
	if c.Len() == 1 {
		return c.ChunkLocator(0)
	}
	h := sha256.New()
	io.WriteString(h, "imgfs v2 content id")
	for i := range c.Len() {
		h.Write([]byte(c.s[i*chunkEntry : i*chunkEntry+32]))
		binary.Write(h, binary.BigEndian, uint64(c.ChunkSize(i)))
	}
	return Locator(h.Sum(nil))
}

func (c Content) String() string {
	if c.Len() == 1 {
		return fmt.Sprintf("content(%s, %d bytes)", c.ChunkLocator(0), c.ChunkSize(0))
	}
	return fmt.Sprintf("content(%d chunks, %d bytes)", c.Len(), c.Size())
}

func (c Content) GoString() string                    { return c.String() }
func (c Content) Format(f fmt.State, verb rune)       { io.WriteString(f, c.String()) }
func (c Content) MarshalJSON() ([]byte, error)        { return []byte(`"` + c.String() + `"`), nil }
func (c Content) MarshalText() (text []byte, e error) { return []byte(c.String()), nil }

// Encoding of a chunk list inside stored metadata (fs/core inode records and tree objects):
//
//	one chunk:  0x01 locator(32) K_c(32) varint(size)        (the v1 inode layout)
//	otherwise:  0x02 uvarint(n) n × { locator(32) K_c(32) varint(size) },  n = 0 or n ≥ 2
//
// varint is Go's zigzag varint (as in v1); every integer must be minimally encoded.
//
// Every chunk but a last one has size ≥ 1; canonical: one encoding per list.

var errBadContent = errors.New("dedup: malformed chunk list")

// AppendBinary appends the encoding of c.
func (c Content) AppendBinary(b []byte) []byte {
	n := c.Len()
	if n == 1 {
		b = append(b, 1)
	} else {
		b = append(b, 2)
		b = binary.AppendUvarint(b, uint64(n))
	}
	for i := range n {
		e := c.s[i*chunkEntry : (i+1)*chunkEntry]
		b = append(b, e[:64]...)
		b = binary.AppendVarint(b, c.ChunkSize(i))
	}
	return b
}

// DecodeContent parses one encoded chunk list at the start of b and returns it and the
// number of bytes it took (fuzzed by FuzzDecodeContent).
func DecodeContent(b []byte) (Content, int, error) {
	if len(b) < 1 {
		return Content{}, 0, errBadContent
	}
	p := 1
	var n uint64
	switch b[0] {
	case 1:
		n = 1
	case 2:
		v, k := binary.Uvarint(b[p:])
		if k <= 0 || k != len(binary.AppendUvarint(nil, v)) || v == 1 || v > MaxChunks || v > uint64(len(b)-p-k)/(64+1) {
			return Content{}, 0, errBadContent
		}
		n, p = v, p+k
	default:
		return Content{}, 0, errBadContent
	}
	out := make([]byte, 0, int(n)*chunkEntry)
	var total uint64
	for i := uint64(0); i < n; i++ {
		if len(b)-p < 64 {
			return Content{}, 0, errBadContent
		}
		out = append(out, b[p:p+64]...)
		p += 64
		sz, k := binary.Varint(b[p:])
		if k <= 0 || sz < 0 || sz > MaxPlainSize || (sz == 0 && n > 1) {
			return Content{}, 0, errBadContent
		}
		if k != len(binary.AppendVarint(nil, sz)) { // non-minimal varint: not canonical
			return Content{}, 0, errBadContent
		}
		p += k
		total += uint64(sz)
		if total > MaxPlainSize {
			return Content{}, 0, errBadContent
		}
		out = binary.BigEndian.AppendUint64(out, uint64(sz))
	}
	return Content{s: string(out)}, p, nil
}

// Chunks returns the chunks in order.
func (c Content) Chunks() []Ref {
	out := make([]Ref, c.Len())
	for i := range out {
		out[i] = c.Chunk(i)
	}
	return out
}
