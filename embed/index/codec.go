package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Entry is what the near-duplicate indexer stores per content object (in the vault's
// encrypted aux table "emb"): the model that made the vector and the vector.
type Entry struct {
	Model  string    // embed.Model.ID(): vectors of different models are not comparable
	Vector []float32 // unit length
	// Mirror is the embedding of the left-right mirror image (unit length, same dim), or
	// nil. It is not searched: a photo's mirror queries the index (docs/similar.md).
	Mirror []float32
	// Local and LocalMirror are the verification descriptors (embed.Local) of the photo and
	// of its mirror image: LocalGrid x LocalGrid cells of LocalC int8 values each, or nil.
	// They need a Mirror vector.
	LocalGrid, LocalC  int
	Local, LocalMirror []int8
}

// Entry encoding (all integers little-endian):
//
//	version 1: "IE" | 1 | model length (uint16) | model (UTF-8) | dim (uint16) | dim x float32
//	version 2: the same with version byte 2, followed by the mirror vector (dim x float32)
//	version 3: version 2 with version byte 3, followed by grid (uint8) | channels (uint16) |
//	           local (grid*grid*channels x int8) | local mirror (the same length)
//
// The lowest version that holds the entry is written; all three are read.
const entryMagic = "IE"

// MaxModelLen bounds Entry.Model.
const MaxModelLen = 1024

// ErrCorrupt is returned for bytes that are not a valid encoding.
var ErrCorrupt = errors.New("index: corrupt entry")

// EncodeEntry serialises e.
func EncodeEntry(e Entry) ([]byte, error) {
	if len(e.Model) > MaxModelLen || !utf8.ValidString(e.Model) {
		return nil, fmt.Errorf("index: model id too long or not UTF-8")
	}
	if len(e.Vector) == 0 || len(e.Vector) > MaxDim || (e.Mirror != nil && len(e.Mirror) != len(e.Vector)) {
		return nil, ErrDim
	}
	version := byte(1)
	if e.Mirror != nil {
		version = 2
	}
	if e.Local != nil || e.LocalMirror != nil {
		if e.Mirror == nil || !localShapeOK(e.LocalGrid, e.LocalC) || len(e.Local) != e.LocalGrid*e.LocalGrid*e.LocalC || len(e.LocalMirror) != len(e.Local) {
			return nil, ErrDim
		}
		version = 3
	}
	b := make([]byte, 0, 7+len(e.Model)+4*(len(e.Vector)+len(e.Mirror))+3+2*len(e.Local))
	b = append(b, entryMagic...)
	b = append(b, version)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.Model)))
	b = append(b, e.Model...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.Vector)))
	for _, v := range [][]float32{e.Vector, e.Mirror} {
		for _, f := range v {
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return nil, ErrDim
			}
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
		}
	}
	if version == 3 {
		b = append(b, byte(e.LocalGrid))
		b = binary.LittleEndian.AppendUint16(b, uint16(e.LocalC))
		for _, l := range [][]int8{e.Local, e.LocalMirror} {
			for _, v := range l {
				b = append(b, byte(v))
			}
		}
	}
	return b, nil
}

// localShapeOK bounds a local descriptor's grid and channels.
func localShapeOK(grid, c int) bool { return grid >= 2 && grid <= 32 && c >= 1 && c <= 1024 }

// DecodeEntry parses EncodeEntry's output. It rejects anything else: other magic or
// version, lengths out of range or not matching, trailing bytes, non-UTF-8 model ids,
// non-finite components and vectors whose length is far from 1.
func DecodeEntry(b []byte) (Entry, error) {
	if len(b) < 7 || string(b[:2]) != entryMagic {
		return Entry{}, ErrCorrupt
	}
	if b[2] < 1 || b[2] > 3 {
		return Entry{}, fmt.Errorf("index: entry version %d not supported", b[2])
	}
	nvec := min(int(b[2]), 2) // versions 2 and 3 carry the mirror vector too
	ml := int(binary.LittleEndian.Uint16(b[3:]))
	if ml > MaxModelLen || len(b) < 5+ml+2 {
		return Entry{}, ErrCorrupt
	}
	model := string(b[5 : 5+ml])
	if !utf8.ValidString(model) {
		return Entry{}, ErrCorrupt
	}
	p := 5 + ml
	dim := int(binary.LittleEndian.Uint16(b[p:]))
	p += 2
	end := p + 4*dim*nvec
	if dim == 0 || dim > MaxDim || len(b) < end || (b[2] < 3 && len(b) != end) {
		return Entry{}, ErrCorrupt
	}
	e := Entry{Model: model}
	for k := 0; k < nvec; k++ {
		v, err := decodeUnit(b[p+4*dim*k:], dim)
		if err != nil {
			return Entry{}, err
		}
		if k == 0 {
			e.Vector = v
		} else {
			e.Mirror = v
		}
	}
	if b[2] == 3 {
		if len(b) < end+3 {
			return Entry{}, ErrCorrupt
		}
		g, c := int(b[end]), int(binary.LittleEndian.Uint16(b[end+1:]))
		n := g * g * c
		if !localShapeOK(g, c) || len(b) != end+3+2*n {
			return Entry{}, ErrCorrupt
		}
		e.LocalGrid, e.LocalC = g, c
		e.Local, e.LocalMirror = make([]int8, n), make([]int8, n)
		for i := 0; i < n; i++ {
			e.Local[i], e.LocalMirror[i] = int8(b[end+3+i]), int8(b[end+3+n+i])
		}
	}
	return e, nil
}

// decodeUnit reads dim float32s and checks they are finite and of length about 1.
func decodeUnit(b []byte, dim int) ([]float32, error) {
	v := make([]float32, dim)
	var norm float64
	for i := range v {
		f := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return nil, ErrCorrupt
		}
		v[i] = f
		norm += float64(f) * float64(f)
	}
	if math.Abs(norm-1) > 1e-3 {
		return nil, ErrCorrupt
	}
	return v, nil
}
