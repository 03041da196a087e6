package leakscan

import (
	"encoding/binary"
	"math"
)

// VectorForms returns an embedding vector serialised as float32 little-endian and as IEEE
// half precision little-endian: the forms T6 (docs/security-tests.md) searches stored
// bytes for.
func VectorForms(v []float32) (f32, f16 []byte) {
	for _, x := range v {
		f32 = binary.LittleEndian.AppendUint32(f32, math.Float32bits(x))
		f16 = binary.LittleEndian.AppendUint16(f16, halfFloat(x))
	}
	return f32, f16
}

// halfFloat converts to half precision, rounding toward zero (subnormals become zero,
// out-of-range values infinity): enough to find a serialised vector.
func halfFloat(f float32) uint16 {
	b := math.Float32bits(f)
	sign, exp, man := uint16(b>>16)&0x8000, int(b>>23&0xff)-127+15, b&0x7fffff
	switch {
	case exp <= 0:
		return sign
	case exp >= 31:
		return sign | 0x7c00
	}
	return sign | uint16(exp)<<10 | uint16(man>>13)
}
