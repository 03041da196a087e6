package embed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// reference.json is written by testdata/parity/parity.js: the original network (npm nsfwjs
// MobileNetV2) run by TensorFlow.js's CPU backend on the same input tensors.
type parityRef struct {
	Scale  float64 `json:"scale"`
	Offset float64 `json:"offset"`
	TFJS   string  `json:"tfjs"`
	Images []struct {
		File   string `json:"file"`
		Layers map[string]struct {
			Shape        []int     `json:"shape"`
			Mean         []float64 `json:"mean"`
			SampleStride int       `json:"sample_stride"`
			Sample       []float64 `json:"sample"`
		} `json:"layers"`
	} `json:"images"`
}

// readPPM reads an 8-bit binary PPM without comments (what the parity images are).
func readPPM(b []byte) (w, h int, rgb []byte, err error) {
	f := bytes.Fields(b[:min(len(b), 32)])
	if len(f) < 4 || string(f[0]) != "P6" || string(f[3]) != "255" {
		return 0, 0, nil, fmt.Errorf("not an 8-bit binary PPM")
	}
	fmt.Sscan(string(f[1]), &w)
	fmt.Sscan(string(f[2]), &h)
	off := bytes.Index(b, []byte("\n255")) + 5 // one whitespace byte after maxval
	if w <= 0 || h <= 0 || off < 5 || off+w*h*3 > len(b) {
		return 0, 0, nil, fmt.Errorf("bad or short PPM")
	}
	return w, h, b[off : off+w*h*3], nil
}

// Tolerances, relative to the layer's largest reference activation.
const (
	parityMaxAbsRel = 1e-4    // any sampled activation or per-channel mean (measured: <= 7.1e-6)
	parityMinCosine = 0.99999 // per-channel mean vectors (measured: 1 - 1e-8)
)

func TestParityWithTFJS(t *testing.T) {
	m := testModel(t)
	raw, err := os.ReadFile(filepath.Join("testdata", "parity", "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref parityRef
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Images) < 3 {
		t.Fatalf("reference.json has %d images, want several", len(ref.Images))
	}
	for _, img := range ref.Images {
		b, err := os.ReadFile(filepath.Join("testdata", "parity", "images", img.File))
		if err != nil {
			t.Fatal(err)
		}
		w, h, rgb, err := readPPM(b)
		if err != nil {
			t.Fatalf("%s: %v", img.File, err)
		}
		if w != m.Input().Width || h != m.Input().Height {
			t.Fatalf("%s: %dx%d, want the model's input size", img.File, w, h)
		}
		x := make([]float32, len(rgb))
		for i, v := range rgb {
			x[i] = float32(float64(v)*ref.Scale + ref.Offset)
		}
		var names []string
		for l := range img.Layers {
			names = append(names, l)
		}
		sort.Strings(names)
		fms, err := m.Forward(x, names...)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range names {
			r, fm := img.Layers[l], fms[i]
			if len(r.Shape) != 3 || r.Shape[0] != fm.H || r.Shape[1] != fm.W || r.Shape[2] != fm.C {
				t.Fatalf("%s %s: shape %dx%dx%d, reference %v", img.File, l, fm.H, fm.W, fm.C, r.Shape)
			}
			scale := 0.0
			for _, v := range r.Sample {
				scale = math.Max(scale, math.Abs(v))
			}
			for _, v := range r.Mean {
				scale = math.Max(scale, math.Abs(v))
			}
			mean := meanPool(fm)
			var dot, na, nb, worst float64
			for c, v := range r.Mean {
				g := float64(mean[c])
				dot += g * v
				na += g * g
				nb += v * v
				worst = math.Max(worst, math.Abs(g-v))
			}
			for s, v := range r.Sample {
				worst = math.Max(worst, math.Abs(float64(fm.Data[s*r.SampleStride])-v))
			}
			cos := dot / math.Sqrt(na*nb)
			t.Logf("%-10s %-22s max|diff|=%.2e (%.2e of max %.3g) cos=%.8f", img.File, l, worst, worst/scale, scale, cos)
			if worst > parityMaxAbsRel*scale || cos < parityMinCosine {
				t.Errorf("%s %s: max|diff| %.3g (limit %.3g), cosine %.7f (limit %v)", img.File, l, worst, parityMaxAbsRel*scale, cos, parityMinCosine)
			}
		}
	}
}

func meanPool(fm FeatureMap) []float32 {
	out := make([]float64, fm.C)
	for p := 0; p < fm.H*fm.W; p++ {
		for c := range out {
			out[c] += float64(fm.Data[p*fm.C+c])
		}
	}
	r := make([]float32, fm.C)
	for c := range r {
		r[c] = float32(out[c] / float64(fm.H*fm.W))
	}
	return r
}
