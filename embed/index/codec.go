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
}

// Entry encoding, version 1 (all integers little-endian):
//
//	"IE" | version (1 byte) = 1 | model length (uint16) | model (UTF-8) |
//	dim (uint16) | dim x float32
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
	if len(e.Vector) == 0 || len(e.Vector) > MaxDim {
		return nil, ErrDim
	}
	b := make([]byte, 0, 7+len(e.Model)+4*len(e.Vector))
	b = append(b, entryMagic...)
	b = append(b, 1)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.Model)))
	b = append(b, e.Model...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.Vector)))
	for _, f := range e.Vector {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return nil, ErrDim
		}
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b, nil
}

// DecodeEntry parses EncodeEntry's output. It rejects anything else: other magic or
// version, lengths out of range or not matching, trailing bytes, non-UTF-8 model ids,
// non-finite components and vectors whose length is far from 1.
func DecodeEntry(b []byte) (Entry, error) {
	if len(b) < 7 || string(b[:2]) != entryMagic {
		return Entry{}, ErrCorrupt
	}
	if b[2] != 1 {
		return Entry{}, fmt.Errorf("index: entry version %d not supported", b[2])
	}
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
	if dim == 0 || dim > MaxDim || len(b) != p+4*dim {
		return Entry{}, ErrCorrupt
	}
	v := make([]float32, dim)
	var norm float64
	for i := range v {
		f := math.Float32frombits(binary.LittleEndian.Uint32(b[p+4*i:]))
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return Entry{}, ErrCorrupt
		}
		v[i] = f
		norm += float64(f) * float64(f)
	}
	if math.Abs(norm-1) > 1e-3 {
		return Entry{}, ErrCorrupt
	}
	return Entry{Model: model, Vector: v}, nil
}
