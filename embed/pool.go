package embed

import "math"

// PoolMean averages each channel over all positions.
func PoolMean(fm FeatureMap) []float32 {
	acc := make([]float64, fm.C)
	for p := 0; p < fm.H*fm.W; p++ {
		row := fm.Data[p*fm.C : (p+1)*fm.C]
		for c, v := range row {
			acc[c] += float64(v)
		}
	}
	out := make([]float32, fm.C)
	for c := range out {
		out[c] = float32(acc[c] / float64(fm.H*fm.W))
	}
	return out
}

// PoolGeM is generalised-mean pooling, (mean of max(x,eps)^p)^(1/p) per channel: p=1 is
// average pooling, large p tends to max pooling. Negative activations are clamped to eps.
func PoolGeM(fm FeatureMap, p float64) []float32 {
	const eps = 1e-6
	acc := make([]float64, fm.C)
	cube := p == 3
	for q := 0; q < fm.H*fm.W; q++ {
		row := fm.Data[q*fm.C : (q+1)*fm.C]
		for c, v := range row {
			x := math.Max(float64(v), eps)
			if cube {
				acc[c] += x * x * x
			} else {
				acc[c] += math.Pow(x, p)
			}
		}
	}
	out := make([]float32, fm.C)
	for c := range out {
		out[c] = float32(math.Pow(acc[c]/float64(fm.H*fm.W), 1/p))
	}
	return out
}

// PoolMax takes each channel's maximum.
func PoolMax(fm FeatureMap) []float32 {
	out := make([]float32, fm.C)
	copy(out, fm.Data[:fm.C])
	for q := 1; q < fm.H*fm.W; q++ {
		row := fm.Data[q*fm.C : (q+1)*fm.C]
		for c, v := range row {
			out[c] = max(out[c], v)
		}
	}
	return out
}

// Normalize scales v to unit L2 length in place (a zero vector stays zero) and returns it.
func Normalize(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return v
	}
	f := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= f
	}
	return v
}

// Cosine is the dot product of two vectors (the cosine similarity when both are normalised).
func Cosine(a, b []float32) float32 {
	if len(a) != len(b) {
		return 0
	}
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}
