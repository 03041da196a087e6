// Package index is imgfs's near-duplicate search over L2-normalised embedding vectors.
//
// Two kinds share one API:
//
//   - Exact keeps float32 vectors and scans them all (cosine = dot product). Scores are exact.
//   - Quantised keeps, per vector, an int8 copy (one scale per vector) and a 512-bit sign code
//     of a fixed pseudo-random rotation (SimHash through two rounds of a randomised
//     Walsh-Hadamard transform). A query with a threshold t first scans the codes, keeping
//     vectors whose Hamming distance is within a bound derived from t (the expected fraction
//     of differing bits is angle/pi, plus a 5-sigma margin), then scores those candidates with
//     the int8 dot product. About 980 bytes per vector; scores are within about 0.01 of exact.
//
// Both are safe for concurrent use; queries fan out over Workers goroutines.
package index

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sort"
	"sync"
)

// ID names a vector; the caller chooses it.
type ID uint64

// Match is one query result.
type Match struct {
	ID    ID
	Score float32 // cosine similarity
}

// Pair is one result of AllPairs (A < B).
type Pair struct {
	A, B  ID
	Score float32
}

// Kind selects the storage and search method.
type Kind uint8

const (
	Exact     Kind = 1
	Quantised Kind = 2
)

func (k Kind) String() string {
	switch k {
	case Exact:
		return "exact"
	case Quantised:
		return "quantised"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// CodeBits is the length of the Quantised kind's sign code.
const CodeBits = 512

const codeWords = CodeBits / 64

// MaxDim bounds the vector length accepted anywhere (also by the decoders).
const MaxDim = 1 << 14

// Index is a set of vectors with one dimension.
type Index struct {
	kind Kind
	dim  int
	rot  *rotation // Quantised only

	mu    sync.RWMutex
	ids   []ID
	slot  map[ID]int32
	f32   []float32 // Exact: n*dim
	q     []int8    // Quantised: n*dim
	scale []float32 // Quantised: per vector
	code  []uint64  // Quantised: n*codeWords

	// Workers is the number of goroutines a query uses (default GOMAXPROCS at New).
	Workers int
	// Margin is the number of standard deviations added to the Hamming bound (default 5).
	Margin float64
}

// New returns an empty index of vectors of length dim.
func New(kind Kind, dim int) (*Index, error) {
	if dim <= 0 || dim > MaxDim {
		return nil, fmt.Errorf("index: dimension %d out of range 1..%d", dim, MaxDim)
	}
	x := &Index{kind: kind, dim: dim, slot: map[ID]int32{}, Workers: runtime.GOMAXPROCS(0), Margin: 5}
	switch kind {
	case Exact:
	case Quantised:
		x.rot = newRotation(dim)
	default:
		return nil, fmt.Errorf("index: unknown kind %d", kind)
	}
	return x, nil
}

// Kind returns the index's kind.
func (x *Index) Kind() Kind { return x.kind }

// Dim returns the vector length.
func (x *Index) Dim() int { return x.dim }

// Len returns the number of vectors.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.ids)
}

// Has reports whether id is present.
func (x *Index) Has(id ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.slot[id]
	return ok
}

// ErrDim is returned for a vector of the wrong length or with non-finite values.
var ErrDim = errors.New("index: vector has the wrong length or non-finite values")

func (x *Index) check(v []float32) error {
	if len(v) != x.dim {
		return ErrDim
	}
	for _, f := range v {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return ErrDim
		}
	}
	return nil
}

// Add inserts v under id, replacing any vector id had. v should have unit length.
func (x *Index) Add(id ID, v []float32) error {
	if err := x.check(v); err != nil {
		return err
	}
	// Quantise outside the lock.
	var q []int8
	var s float32
	var c []uint64
	if x.kind == Quantised {
		q, s = quantise(v)
		c = x.rot.code(v)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	i, ok := x.slot[id]
	if !ok {
		i = int32(len(x.ids))
		x.ids = append(x.ids, id)
		x.slot[id] = i
		switch x.kind {
		case Exact:
			x.f32 = append(x.f32, v...)
		case Quantised:
			x.q = append(x.q, q...)
			x.scale = append(x.scale, s)
			x.code = append(x.code, c...)
		}
		return nil
	}
	switch x.kind {
	case Exact:
		copy(x.f32[int(i)*x.dim:], v)
	case Quantised:
		copy(x.q[int(i)*x.dim:], q)
		x.scale[i] = s
		copy(x.code[int(i)*codeWords:], c)
	}
	return nil
}

// Grow makes room for n more vectors, so that an index loaded with a known count holds
// no append slack (which is up to a quarter of its memory at a million vectors).
func (x *Index) Grow(n int) {
	if n <= 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ids = grow(x.ids, n)
	switch x.kind {
	case Exact:
		x.f32 = grow(x.f32, n*x.dim)
	case Quantised:
		x.q = grow(x.q, n*x.dim)
		x.scale = grow(x.scale, n)
		x.code = grow(x.code, n*codeWords)
	}
	if len(x.slot) == 0 {
		x.slot = make(map[ID]int32, n)
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	t := make([]T, len(s), len(s)+n)
	copy(t, s)
	return t
}

// Remove deletes id; it reports whether id was present.
func (x *Index) Remove(id ID) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	i, ok := x.slot[id]
	if !ok {
		return false
	}
	last := int32(len(x.ids) - 1)
	if i != last {
		lid := x.ids[last]
		x.ids[i] = lid
		x.slot[lid] = i
		d := x.dim
		switch x.kind {
		case Exact:
			copy(x.f32[int(i)*d:int(i+1)*d], x.f32[int(last)*d:])
		case Quantised:
			copy(x.q[int(i)*d:int(i+1)*d], x.q[int(last)*d:])
			x.scale[i] = x.scale[last]
			copy(x.code[int(i)*codeWords:int(i+1)*codeWords], x.code[int(last)*codeWords:])
		}
	}
	delete(x.slot, id)
	x.ids = x.ids[:last]
	switch x.kind {
	case Exact:
		x.f32 = x.f32[:int(last)*x.dim]
	case Quantised:
		x.q = x.q[:int(last)*x.dim]
		x.scale = x.scale[:last]
		x.code = x.code[:int(last)*codeWords]
	}
	return true
}

// Vector returns id's vector (for Quantised, the dequantised approximation).
func (x *Index) Vector(id ID) ([]float32, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.slot[id]
	if !ok {
		return nil, false
	}
	return x.vectorAt(int(i)), true
}

func (x *Index) vectorAt(i int) []float32 {
	out := make([]float32, x.dim)
	switch x.kind {
	case Exact:
		copy(out, x.f32[i*x.dim:(i+1)*x.dim])
	case Quantised:
		s := x.scale[i]
		for k, v := range x.q[i*x.dim : (i+1)*x.dim] {
			out[k] = float32(v) * s
		}
	}
	return out
}

// MemoryBytes estimates the heap the index holds (vectors, codes, ids and the id map).
func (x *Index) MemoryBytes() int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := int64(cap(x.f32))*4 + int64(cap(x.q)) + int64(cap(x.scale))*4 + int64(cap(x.code))*8 + int64(cap(x.ids))*8
	// Go's swiss-table map: 8-byte control word per group of 8 slots, slots of 16 bytes
	// (8-byte key + 4-byte value, padded), load factor <= 7/8.
	n += int64(float64(len(x.slot)) * (16 + 1) * 8 / 7)
	return n
}

// Query returns the vectors whose similarity to v is at least threshold, best first (ties
// by ID), at most k of them (k <= 0: all).
func (x *Index) Query(v []float32, k int, threshold float32) ([]Match, error) {
	if err := x.check(v); err != nil {
		return nil, err
	}
	var q []int8
	var s float32
	var c []uint64
	if x.kind == Quantised {
		q, s = quantise(v)
		c = x.rot.code(v)
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.query(v, q, s, c, -1, k, threshold), nil
}

// QueryID is Query with id's own vector, leaving id itself out.
func (x *Index) QueryID(id ID, k int, threshold float32) ([]Match, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.slot[id]
	if !ok {
		return nil, false
	}
	return x.queryAt(int(i), k, threshold), true
}

func (x *Index) queryAt(i, k int, threshold float32) []Match {
	switch x.kind {
	case Exact:
		return x.query(x.f32[i*x.dim:(i+1)*x.dim], nil, 0, nil, i, k, threshold)
	default:
		return x.query(nil, x.q[i*x.dim:(i+1)*x.dim], x.scale[i], x.code[i*codeWords:(i+1)*codeWords], i, k, threshold)
	}
}

// HammingBound is the largest code distance a pair with similarity >= t is expected to have
// (mean plus margin standard deviations of a binomial with p = acos(t)/pi).
func HammingBound(t float32, margin float64) int {
	if t <= -1 {
		return CodeBits
	}
	if t > 1 {
		t = 1
	}
	p := math.Acos(float64(t)) / math.Pi
	b := float64(CodeBits)*p + margin*math.Sqrt(float64(CodeBits)*p*(1-p)) + margin
	if b >= CodeBits {
		return CodeBits
	}
	return int(b)
}

// query scans all vectors; skip is a slot to leave out (-1: none). Caller holds mu.
func (x *Index) query(vf []float32, vq []int8, vs float32, vc []uint64, skip, k int, threshold float32) []Match {
	n := len(x.ids)
	w := x.Workers
	if w < 1 {
		w = 1
	}
	if n < 4096 {
		w = 1
	}
	hb := HammingBound(threshold, x.Margin)
	parts := make([][]Match, w)
	var wg sync.WaitGroup
	for p := 0; p < w; p++ {
		lo, hi := n*p/w, n*(p+1)/w
		wg.Add(1)
		go func(p, lo, hi int) {
			defer wg.Done()
			var h topK
			h.k = k
			d := x.dim
			for i := lo; i < hi; i++ {
				if i == skip {
					continue
				}
				var s float32
				if x.kind == Exact {
					s = dotF32(vf, x.f32[i*d:(i+1)*d])
				} else {
					if hb < CodeBits && hamming(vc, x.code[i*codeWords:(i+1)*codeWords]) > hb {
						continue
					}
					s = float32(dotI8(vq, x.q[i*d:(i+1)*d])) * vs * x.scale[i]
				}
				if s >= threshold {
					h.add(Match{x.ids[i], s})
				}
			}
			parts[p] = h.ms
		}(p, lo, hi)
	}
	wg.Wait()
	var out []Match
	for _, p := range parts {
		out = append(out, p...)
	}
	sortMatches(out)
	if k > 0 && len(out) > k {
		out = out[:k]
	}
	return out
}

func sortMatches(ms []Match) {
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Score != ms[j].Score {
			return ms[i].Score > ms[j].Score
		}
		return ms[i].ID < ms[j].ID
	})
}

// AllPairs returns every pair with similarity >= threshold, best first.
func (x *Index) AllPairs(threshold float32) []Pair {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []Pair
	for i := range x.ids {
		for _, m := range x.queryAt(i, 0, threshold) {
			if x.ids[i] < m.ID {
				out = append(out, Pair{x.ids[i], m.ID, m.Score})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		if out[i].A != out[j].A {
			return out[i].A < out[j].A
		}
		return out[i].B < out[j].B
	})
	return out
}

// topK keeps the k best matches (all when k <= 0) as a min-heap.
type topK struct {
	k  int
	ms []Match
}

func (h *topK) Len() int { return len(h.ms) }
func (h *topK) Less(i, j int) bool {
	if h.ms[i].Score != h.ms[j].Score {
		return h.ms[i].Score < h.ms[j].Score
	}
	return h.ms[i].ID > h.ms[j].ID
}
func (h *topK) Swap(i, j int) { h.ms[i], h.ms[j] = h.ms[j], h.ms[i] }
func (h *topK) Push(v any)    { h.ms = append(h.ms, v.(Match)) }
func (h *topK) Pop() any {
	v := h.ms[len(h.ms)-1]
	h.ms = h.ms[:len(h.ms)-1]
	return v
}

func (h *topK) add(m Match) {
	if h.k <= 0 {
		h.ms = append(h.ms, m)
		return
	}
	if len(h.ms) < h.k {
		heap.Push(h, m)
		return
	}
	w := h.ms[0]
	if m.Score > w.Score || (m.Score == w.Score && m.ID < w.ID) {
		h.ms[0] = m
		heap.Fix(h, 0)
	}
}

func dotF32(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

func dotI8(a, b []int8) int32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 int32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		s0 += int32(a[i])*int32(b[i]) + int32(a[i+4])*int32(b[i+4])
		s1 += int32(a[i+1])*int32(b[i+1]) + int32(a[i+5])*int32(b[i+5])
		s2 += int32(a[i+2])*int32(b[i+2]) + int32(a[i+6])*int32(b[i+6])
		s3 += int32(a[i+3])*int32(b[i+3]) + int32(a[i+7])*int32(b[i+7])
	}
	for ; i < len(a); i++ {
		s0 += int32(a[i]) * int32(b[i])
	}
	return s0 + s1 + s2 + s3
}

func hamming(a, b []uint64) int {
	b = b[:codeWords]
	a = a[:codeWords]
	return bits.OnesCount64(a[0]^b[0]) + bits.OnesCount64(a[1]^b[1]) +
		bits.OnesCount64(a[2]^b[2]) + bits.OnesCount64(a[3]^b[3]) +
		bits.OnesCount64(a[4]^b[4]) + bits.OnesCount64(a[5]^b[5]) +
		bits.OnesCount64(a[6]^b[6]) + bits.OnesCount64(a[7]^b[7])
}

// quantise maps v to int8 with one scale (max |v| / 127).
func quantise(v []float32) ([]int8, float32) {
	var m float32
	for _, f := range v {
		if f < 0 {
			f = -f
		}
		if f > m {
			m = f
		}
	}
	q := make([]int8, len(v))
	if m == 0 {
		return q, 0
	}
	s := m / 127
	for i, f := range v {
		r := math.Round(float64(f / s))
		if r > 127 {
			r = 127
		} else if r < -127 {
			r = -127
		}
		q[i] = int8(r)
	}
	return q, s
}

// rotation is a fixed pseudo-random orthogonal transform: two rounds of (random signs,
// normalised Walsh-Hadamard) on the zero-padded vector; the code is the signs of the
// first CodeBits outputs.
type rotation struct {
	n      int // power of two >= max(dim, CodeBits)
	signs  [2][]float32
	mu     sync.Mutex
	bufs   [][]float32
	dimLen int
}

func newRotation(dim int) *rotation {
	n := 1
	for n < dim || n < CodeBits {
		n <<= 1
	}
	r := &rotation{n: n, dimLen: dim}
	// xorshift64*, fixed seed: codes are reproducible across runs and machines.
	s := uint64(0x9e3779b97f4a7c15)
	for k := 0; k < 2; k++ {
		r.signs[k] = make([]float32, n)
		for i := range r.signs[k] {
			s ^= s >> 12
			s ^= s << 25
			s ^= s >> 27
			if (s*0x2545f4914f6cdd1d)>>63 == 1 {
				r.signs[k][i] = 1
			} else {
				r.signs[k][i] = -1
			}
		}
	}
	return r
}

func (r *rotation) code(v []float32) []uint64 {
	r.mu.Lock()
	var buf []float32
	if l := len(r.bufs); l > 0 {
		buf = r.bufs[l-1]
		r.bufs = r.bufs[:l-1]
	} else {
		buf = make([]float32, r.n)
	}
	r.mu.Unlock()
	copy(buf, v)
	clear(buf[len(v):])
	for k := 0; k < 2; k++ {
		for i, s := range r.signs[k] {
			buf[i] *= s
		}
		fwht(buf)
	}
	c := make([]uint64, codeWords)
	for i := 0; i < CodeBits; i++ {
		if buf[i] > 0 {
			c[i/64] |= 1 << (i % 64)
		}
	}
	r.mu.Lock()
	r.bufs = append(r.bufs, buf)
	r.mu.Unlock()
	return c
}

// fwht is the in-place unnormalised fast Walsh-Hadamard transform (signs are all we need).
func fwht(a []float32) {
	for h := 1; h < len(a); h <<= 1 {
		for i := 0; i < len(a); i += h << 1 {
			for j := i; j < i+h; j++ {
				x, y := a[j], a[j+h]
				a[j], a[j+h] = x+y, x-y
			}
		}
	}
}
