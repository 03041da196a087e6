package embed

import (
	"math/rand"
	"testing"
)

func BenchmarkForward(b *testing.B) {
	m := testModel(b)
	in := m.Input()
	x := make([]float32, in.Height*in.Width*in.Channels)
	r := rand.New(rand.NewSource(1))
	for i := range x {
		x[i] = r.Float32()
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Forward(x, "out_relu"); err != nil {
			b.Fatal(err)
		}
	}
}
