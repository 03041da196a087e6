package index

import (
	"math"
	"math/rand/v2"
)

// Synthetic makes n unit vectors for tests and benchmarks that look like photo embeddings
// to a similarity search: every vector shares a common direction (so unrelated vectors
// have similarity about common^2/(common^2+1), as CNN features, which are non-negative,
// do), and every groupSize consecutive vectors are near-duplicates of the group's first
// (similarity to it about 1/sqrt(1+e^2), e uniform in 0.2..1 times noise). Deterministic for a seed.
func Synthetic(n, dim, groupSize int, common, noise float64, seed uint64) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	mean := make([]float64, dim)
	for i := range mean {
		mean[i] = math.Abs(r.NormFloat64())
	}
	normalise64(mean)
	out := make([][]float32, n)
	var base []float64
	sd := 1 / math.Sqrt(float64(dim))
	for i := 0; i < n; i++ {
		if groupSize <= 1 || i%groupSize == 0 {
			base = make([]float64, dim)
			for k := range base {
				base[k] = common*mean[k] + r.NormFloat64()*sd
			}
			normalise64(base)
			out[i] = toF32(base)
			continue
		}
		v := make([]float64, dim)
		nz := noise * (0.2 + 0.8*r.Float64())
		for k := range v {
			v[k] = base[k] + nz*r.NormFloat64()*sd
		}
		normalise64(v)
		out[i] = toF32(v)
	}
	return out
}

func normalise64(v []float64) {
	var s float64
	for _, f := range v {
		s += f * f
	}
	s = math.Sqrt(s)
	if s == 0 {
		return
	}
	for i := range v {
		v[i] /= s
	}
}

func toF32(v []float64) []float32 {
	o := make([]float32, len(v))
	for i, f := range v {
		o[i] = float32(f)
	}
	return o
}
