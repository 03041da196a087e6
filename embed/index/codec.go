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
}

// Entry encoding (all integers little-endian):
//
//	version 1: "IE" | 1 | model length (uint16) | model (UTF-8) | dim (uint16) | dim x float32
//	version 2: the same with version byte 2, followed by the mirror vector (dim x float32)
//
// Version 1 is written when there is no mirror vector; both are read.
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
	b := make([]byte, 0, 7+len(e.Model)+4*(len(e.Vector)+len(e.Mirror)))
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
	return b, nil
}

// DecodeEntry parses EncodeEntry's output. It rejects anything else: other magic or
// version, lengths out of range or not matching, trailing bytes, non-UTF-8 model ids,
// non-finite components and vectors whose length is far from 1.
func DecodeEntry(b []byte) (Entry, error) {
	if len(b) < 7 || string(b[:2]) != entryMagic {
		return Entry{}, ErrCorrupt
	}
	if b[2] != 1 && b[2] != 2 {
		return Entry{}, fmt.Errorf("index: entry version %d not supported", b[2])
	}
	nvec := int(b[2]) // version 2 carries the mirror vector too
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
	if dim == 0 || dim > MaxDim || len(b) != p+4*dim*nvec {
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
