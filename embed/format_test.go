package embed

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand"
	"strings"
	"testing"
)

// smallModelFile is a valid two-layer model: 1x1 conv (3->4, relu6) then depthwise 3x3.
func smallModelFile(tb testing.TB) []byte {
	tb.Helper()
	r := rand.New(rand.NewSource(1))
	vals := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	h := FileHeader{
		Name: "small", Source: "test",
		Input: InputSpec{Name: "in", Height: 6, Width: 5, Channels: 3},
		Nodes: []NodeSpec{
			{Name: "pw", Op: "conv2d", Inputs: []string{"in"}, Weights: "pw/w", Bias: "pw/b", Stride: [2]int{1, 1}, Act: "relu6"},
			{Name: "dw", Op: "dwconv2d", Inputs: []string{"pw"}, Weights: "dw/w", Bias: "dw/b", Stride: [2]int{2, 2}, Pad: [4]int{1, 1, 0, 1}, Act: "linear"},
			{Name: "sum", Op: "add", Inputs: []string{"dw", "dw"}},
			{Name: "act", Op: "act", Inputs: []string{"sum"}, Act: "relu"},
		},
		Tensors: []TensorSpec{{Name: "pw/w", Shape: []int{1, 1, 3, 4}}, {Name: "pw/b", Shape: []int{4}}, {Name: "dw/w", Shape: []int{3, 3, 4}}, {Name: "dw/b", Shape: []int{4}}},
	}
	ts := map[string][]float32{"pw/w": vals(12), "pw/b": vals(4), "dw/w": vals(36), "dw/b": vals(4)}
	var buf bytes.Buffer
	if err := WriteModelFile(&buf, h, ts); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func TestModelFileRoundTrip(t *testing.T) {
	b := smallModelFile(t)
	m, err := loadBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.NodeNames(), ","); got != "in,pw,dw,sum,act" {
		t.Fatalf("nodes %s", got)
	}
	x := make([]float32, 6*5*3)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	out, err := m.Forward(x, "act", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if a := out[0]; a.H != 3 || a.W != 2 || a.C != 4 { // (6+1+1-3)/2+1, (5+0+1-3)/2+1
		t.Fatalf("act shape %dx%dx%d, want 3x2x4", a.H, a.W, a.C)
	}
	for _, v := range out[1].Data {
		if v < 0 || v > 6 {
			t.Fatalf("relu6 output %v", v)
		}
	}
	if _, err := m.Forward(x[:10]); err == nil {
		t.Fatal("short input accepted")
	}
	if _, err := m.Forward(x, "nope"); err == nil {
		t.Fatal("unknown layer accepted")
	}
	if _, err := m.Embed(nil); err == nil {
		t.Fatal("Embed without a recipe for this model succeeded")
	}
}

func TestModelFileCorruption(t *testing.T) {
	good := smallModelFile(t)
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := map[string][]byte{
		"empty":       nil,
		"bad magic":   mutate(func(b []byte) []byte { b[0] = 'X'; return b }),
		"version":     mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 2); return b }),
		"header len":  mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], math.MaxUint32); return b }),
		"data bit":    mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }),
		"truncated":   good[:len(good)-4],
		"header junk": mutate(func(b []byte) []byte { b[20] = '}'; return b }),
	}
	for name, b := range cases {
		if _, err := loadBytes(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestModelGraphValidation(t *testing.T) {
	bad := []FileHeader{
		{Input: InputSpec{Name: "in", Height: 0, Width: 5, Channels: 3}},
		{Input: InputSpec{Name: "in", Height: 4, Width: 4, Channels: 3}, Nodes: []NodeSpec{{Name: "a", Op: "add", Inputs: []string{"in"}}}},
		{Input: InputSpec{Name: "in", Height: 4, Width: 4, Channels: 3}, Nodes: []NodeSpec{{Name: "a", Op: "act", Inputs: []string{"missing"}}}},
		{Input: InputSpec{Name: "in", Height: 4, Width: 4, Channels: 3}, Nodes: []NodeSpec{{Name: "in", Op: "act", Inputs: []string{"in"}}}},
		{Input: InputSpec{Name: "in", Height: 4, Width: 4, Channels: 3}, Nodes: []NodeSpec{{Name: "a", Op: "softmax", Inputs: []string{"in"}}}},
		{Input: InputSpec{Name: "in", Height: 4, Width: 4, Channels: 3}, Nodes: []NodeSpec{{Name: "a", Op: "act", Inputs: []string{"in"}, Act: "gelu"}}},
		{Input: InputSpec{Name: "in", Height: 4, Width: 4, Channels: 3}, Nodes: []NodeSpec{{Name: "c", Op: "conv2d", Inputs: []string{"in"}, Weights: "w", Bias: "b", Stride: [2]int{1, 1}}},
			Tensors: []TensorSpec{{Name: "w", Shape: []int{1, 1, 2, 4}}, {Name: "b", Shape: []int{4}}}},
		{Input: InputSpec{Name: "in", Height: 2, Width: 2, Channels: 3}, Nodes: []NodeSpec{{Name: "c", Op: "conv2d", Inputs: []string{"in"}, Weights: "w", Bias: "b", Stride: [2]int{1, 1}}},
			Tensors: []TensorSpec{{Name: "w", Shape: []int{3, 3, 3, 1}}, {Name: "b", Shape: []int{1}}}},
		{Input: InputSpec{Name: "in", Height: 4, Width: 4, Channels: 3}, Nodes: []NodeSpec{{Name: "c", Op: "conv2d", Inputs: []string{"in"}, Weights: "w", Bias: "b", Stride: [2]int{0, 1}}},
			Tensors: []TensorSpec{{Name: "w", Shape: []int{1, 1, 3, 1}}, {Name: "b", Shape: []int{1}}}},
	}
	for i, h := range bad {
		ts := map[string][]float32{}
		for _, t := range h.Tensors {
			n, _ := numElems(t.Shape)
			ts[t.Name] = make([]float32, n)
		}
		var buf bytes.Buffer
		if err := WriteModelFile(&buf, h, ts); err != nil {
			t.Fatal(err)
		}
		if _, err := loadBytes(buf.Bytes()); err == nil {
			t.Errorf("case %d: invalid graph accepted", i)
		}
	}
}

// FuzzLoadModel: a hostile model file must give an error, never a panic or a huge allocation.
func FuzzLoadModel(f *testing.F) {
	good := smallModelFile(f)
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte("IMGFSMDL\x01\x00\x00\x00\x02\x00\x00\x00{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := loadBytes(b)
		if err != nil {
			return
		}
		in := m.Input()
		if in.Height*in.Width*in.Channels > 1<<16 {
			return
		}
		x := make([]float32, in.Height*in.Width*in.Channels)
		m.Forward(x, m.NodeNames()[len(m.NodeNames())-1])
	})
}
