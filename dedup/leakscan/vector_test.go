package leakscan

import (
	"encoding/binary"
	"testing"
)

func TestVectorForms(t *testing.T) {
	in := []float32{1, -2, 0.5, 65504, 1e-9, 1e9, 0.333251953125}
	want16 := []uint16{0x3c00, 0xc000, 0x3800, 0x7bff, 0, 0x7c00, 0x3555}
	f32, f16 := VectorForms(in)
	if len(f32) != 4*len(in) || len(f16) != 2*len(in) {
		t.Fatalf("lengths %d, %d", len(f32), len(f16))
	}
	if got := binary.LittleEndian.Uint32(f32[4:]); got != 0xc0000000 {
		t.Errorf("float32 of -2: %#x", got)
	}
	for i, w := range want16 {
		if got := binary.LittleEndian.Uint16(f16[2*i:]); got != w {
			t.Errorf("half of %v: %#04x, want %#04x", in[i], got, w)
		}
	}
}
