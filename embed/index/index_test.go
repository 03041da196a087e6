package index

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"sort"
	"testing"
)

const testDim = 864

func bruteForce(vs map[ID][]float32, q []float32, skip ID, threshold float32) []Match {
	var out []Match
	for id, v := range vs {
		if id == skip {
			continue
		}
		var s float64
		for i := range v {
			s += float64(v[i]) * float64(q[i])
		}
		if float32(s) >= threshold {
			out = append(out, Match{id, float32(s)})
		}
	}
	sortMatches(out)
	return out
}

func TestExactMatchesBruteForce(t *testing.T) {
	vs := Synthetic(3000, testDim, 4, 1, 0.5, 1)
	x, err := New(Exact, testDim)
	if err != nil {
		t.Fatal(err)
	}
	m := map[ID][]float32{}
	for i, v := range vs {
		id := ID(i*7 + 3)
		if err := x.Add(id, v); err != nil {
			t.Fatal(err)
		}
		m[id] = v
	}
	for _, qi := range []int{0, 1, 17, 2999} {
		id := ID(qi*7 + 3)
		got, ok := x.QueryID(id, 0, 0.8)
		if !ok {
			t.Fatal("QueryID: missing")
		}
		want := bruteForce(m, vs[qi], id, 0.8)
		if len(got) != len(want) || len(want) == 0 {
			t.Fatalf("query %d: got %d matches, want %d (>0)", qi, len(got), len(want))
		}
		for i := range got {
			if got[i].ID != want[i].ID || math.Abs(float64(got[i].Score-want[i].Score)) > 1e-4 {
				t.Fatalf("query %d match %d: got %+v want %+v", qi, i, got[i], want[i])
			}
		}
		for _, g := range got {
			if g.ID == id {
				t.Fatal("QueryID returned the query itself")
			}
		}
	}
	// Query (not QueryID) includes the vector itself with score ~1, first.
	got, err := x.Query(vs[5], 2, 0.5)
	if err != nil || len(got) != 2 || got[0].ID != ID(5*7+3) || got[0].Score < 0.999 {
		t.Fatalf("Query top-2 = %+v, %v", got, err)
	}
}

func TestAddReplaceRemove(t *testing.T) {
	for _, kind := range []Kind{Exact, Quantised} {
		t.Run(kind.String(), func(t *testing.T) {
			vs := Synthetic(50, testDim, 1, 1, 0, 2)
			x, _ := New(kind, testDim)
			for i, v := range vs {
				x.Add(ID(i), v)
			}
			if x.Len() != 50 {
				t.Fatalf("Len = %d", x.Len())
			}
			// Replace 3 by 4's vector: 3 and 4 become a pair with score ~1.
			x.Add(3, vs[4])
			if x.Len() != 50 {
				t.Fatalf("Len after replace = %d", x.Len())
			}
			ms, _ := x.QueryID(3, 0, 0.95)
			if len(ms) != 1 || ms[0].ID != 4 || ms[0].Score < 0.98 {
				t.Fatalf("after replace: %+v", ms)
			}
			// Remove several (first, middle, last) and check the rest still answer right.
			for _, id := range []ID{0, 25, 49, 4} {
				if !x.Remove(id) {
					t.Fatalf("Remove(%d) = false", id)
				}
			}
			if x.Remove(25) {
				t.Fatal("second Remove = true")
			}
			if x.Len() != 46 || x.Has(25) || !x.Has(26) {
				t.Fatalf("Len = %d", x.Len())
			}
			ms, _ = x.QueryID(3, 0, 0.95)
			if len(ms) != 0 {
				t.Fatalf("removed vector still matches: %+v", ms)
			}
			for _, id := range []ID{1, 26, 48} {
				ms, _ := x.Query(vs[id], 1, 0.9)
				if len(ms) != 1 || ms[0].ID != id {
					t.Fatalf("query %d after removals: %+v", id, ms)
				}
				v, ok := x.Vector(id)
				if !ok || cos(v, vs[id]) < 0.999 {
					t.Fatalf("Vector(%d) wrong", id)
				}
			}
		})
	}
}

func cos(a, b []float32) float64 {
	var s, na, nb float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return s / math.Sqrt(na*nb)
}

func TestRejectsBadVectors(t *testing.T) {
	x, _ := New(Quantised, 4)
	if err := x.Add(1, []float32{1, 0, 0}); !errors.Is(err, ErrDim) {
		t.Fatalf("short vector: %v", err)
	}
	if err := x.Add(1, []float32{1, 0, 0, float32(math.NaN())}); !errors.Is(err, ErrDim) {
		t.Fatalf("NaN: %v", err)
	}
	if _, err := x.Query([]float32{1}, 1, 0); !errors.Is(err, ErrDim) {
		t.Fatalf("query short: %v", err)
	}
	if _, err := New(Exact, 0); err == nil {
		t.Fatal("dim 0 accepted")
	}
}

// recall measures how many of the exact search's matches the quantised search finds.
func recall(t testing.TB, vs [][]float32, queries []int, threshold float32) (rec, maxErr float64, exactN int) {
	ex, _ := New(Exact, len(vs[0]))
	qu, _ := New(Quantised, len(vs[0]))
	for i, v := range vs {
		ex.Add(ID(i), v)
		qu.Add(ID(i), v)
	}
	found := 0
	for _, qi := range queries {
		e, _ := ex.QueryID(ID(qi), 0, threshold)
		// The quantised scores are approximate: look a little lower, then count the exact
		// matches it returned.
		q, _ := qu.QueryID(ID(qi), 0, threshold-0.02)
		got := map[ID]float32{}
		for _, m := range q {
			got[m.ID] = m.Score
		}
		for _, m := range e {
			exactN++
			if s, ok := got[m.ID]; ok {
				found++
				if d := math.Abs(float64(s - m.Score)); d > maxErr {
					maxErr = d
				}
			}
		}
	}
	if exactN == 0 {
		t.Fatal("no exact matches: bad test data")
	}
	return float64(found) / float64(exactN), maxErr, exactN
}

func TestQuantisedRecall(t *testing.T) {
	// Groups of 5 near-duplicates at similarity ~0.8-0.95 in a crowd whose unrelated
	// similarity is ~0.5.
	vs := Synthetic(6000, testDim, 5, 1, 0.6, 3)
	var qs []int
	for i := 0; i < len(vs); i += 37 {
		qs = append(qs, i)
	}
	for _, th := range []float32{0.7, 0.8, 0.9} {
		rec, maxErr, n := recall(t, vs, qs, th)
		t.Logf("threshold %.2f: recall %.4f over %d exact matches, max score error %.4f", th, rec, n, maxErr)
		if rec < 0.99 {
			t.Errorf("threshold %.2f: recall %.4f < 0.99", th, rec)
		}
		if maxErr > 0.02 {
			t.Errorf("threshold %.2f: score error %.4f > 0.02", th, maxErr)
		}
	}
}

func TestQuantisedPrefilterPrunes(t *testing.T) {
	// With a high threshold the code scan must skip most unrelated vectors, or the
	// quantised index is no faster than a full scan.
	vs := Synthetic(2000, testDim, 1, 1, 0, 4)
	x, _ := New(Quantised, testDim)
	for i, v := range vs {
		x.Add(ID(i), v)
	}
	hb := HammingBound(0.85, x.Margin)
	pass := 0
	c0 := x.rot.code(vs[0])
	for i := 1; i < len(vs); i++ {
		if hamming(c0, x.rot.code(vs[i])) <= hb {
			pass++
		}
	}
	t.Logf("bound %d bits: %d of %d unrelated vectors pass", hb, pass, len(vs)-1)
	if pass > len(vs)/10 {
		t.Fatalf("prefilter passes %d of %d unrelated vectors", pass, len(vs)-1)
	}
}

func TestTopKAndPairs(t *testing.T) {
	vs := Synthetic(200, testDim, 4, 1, 0.3, 5)
	for _, kind := range []Kind{Exact, Quantised} {
		x, _ := New(kind, testDim)
		for i, v := range vs {
			x.Add(ID(i), v)
		}
		ms, _ := x.QueryID(0, 2, 0.8)
		if len(ms) != 2 {
			t.Fatalf("%v: top-2 gave %d", kind, len(ms))
		}
		all, _ := x.QueryID(0, 0, 0.8)
		if len(all) != 3 || all[0] != ms[0] || all[1] != ms[1] {
			t.Fatalf("%v: top-2 %+v not the head of %+v", kind, ms, all)
		}
		if !sort.SliceIsSorted(all, func(i, j int) bool { return all[i].Score > all[j].Score }) {
			t.Fatalf("%v: not best first", kind)
		}
		pairs := x.AllPairs(0.8)
		// 50 groups of 4 = 6 pairs each.
		if len(pairs) != 300 {
			t.Fatalf("%v: AllPairs = %d pairs, want 300", kind, len(pairs))
		}
		for _, p := range pairs {
			if p.A >= p.B || p.A/4 != p.B/4 {
				t.Fatalf("%v: bad pair %+v", kind, p)
			}
		}
	}
}

func TestEntryRoundTrip(t *testing.T) {
	v := Synthetic(1, testDim, 1, 1, 0, 6)[0]
	b, err := EncodeEntry(Entry{Model: "mobilenet_v2@x/r1", Vector: v})
	if err != nil {
		t.Fatal(err)
	}
	e, err := DecodeEntry(b)
	if err != nil || e.Model != "mobilenet_v2@x/r1" || len(e.Vector) != testDim {
		t.Fatalf("decode: %+v %v", e.Model, err)
	}
	for i := range v {
		if e.Vector[i] != v[i] {
			t.Fatal("vector changed")
		}
	}
	// Every truncation and every single-byte change of the header is rejected or, for
	// vector bytes, still decodes to a finite vector only if its norm stays ~1.
	for n := 0; n < len(b); n++ {
		if _, err := DecodeEntry(b[:n]); err == nil {
			t.Fatalf("truncation to %d accepted", n)
		}
	}
	if _, err := DecodeEntry(append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	for i := 0; i < 7+len("mobilenet_v2@x/r1"); i++ {
		c := bytes.Clone(b)
		c[i] ^= 0x80
		if e2, err := DecodeEntry(c); err == nil && i != 5 && e2.Model == e.Model {
			t.Fatalf("header flip at %d accepted unchanged", i)
		}
	}
	if _, err := EncodeEntry(Entry{Model: "m", Vector: []float32{float32(math.Inf(1))}}); err == nil {
		t.Fatal("Inf encoded")
	}
}

// TestEntryMirror: version 2 carries the mirror vector; version 1 (no mirror) still reads.
func TestEntryMirror(t *testing.T) {
	vs := Synthetic(2, testDim, 1, 1, 0, 8)
	b, err := EncodeEntry(Entry{Model: "m", Vector: vs[0], Mirror: vs[1]})
	if err != nil {
		t.Fatal(err)
	}
	if b[2] != 2 {
		t.Fatalf("version %d, want 2", b[2])
	}
	e, err := DecodeEntry(b)
	if err != nil || len(e.Mirror) != testDim || e.Mirror[3] != vs[1][3] || e.Vector[3] != vs[0][3] {
		t.Fatalf("decode: %v", err)
	}
	for n := 0; n < len(b); n++ {
		if _, err := DecodeEntry(b[:n]); err == nil {
			t.Fatalf("truncation to %d accepted", n)
		}
	}
	// A version-1 header on version-2 bytes (and the reverse) does not decode.
	c := bytes.Clone(b)
	c[2] = 1
	if _, err := DecodeEntry(c); err == nil {
		t.Fatal("version 1 with a mirror's bytes accepted")
	}
	b1, _ := EncodeEntry(Entry{Model: "m", Vector: vs[0]})
	if b1[2] != 1 {
		t.Fatalf("no mirror: version %d, want 1", b1[2])
	}
	b1[2] = 2
	if _, err := DecodeEntry(b1); err == nil {
		t.Fatal("version 2 without a mirror accepted")
	}
	if _, err := EncodeEntry(Entry{Model: "m", Vector: vs[0], Mirror: vs[1][:3]}); err == nil {
		t.Fatal("mirror of another length encoded")
	}
}

// TestEntryLocal: version 3 carries the verification descriptors; they need a mirror vector
// and must have the declared shape.
func TestEntryLocal(t *testing.T) {
	vs := Synthetic(2, testDim, 1, 1, 0, 8)
	loc, locm := make([]int8, 2*2*3), make([]int8, 2*2*3)
	for i := range loc {
		loc[i], locm[i] = int8(i-6), int8(100-i)
	}
	e0 := Entry{Model: "m", Vector: vs[0], Mirror: vs[1], LocalGrid: 2, LocalC: 3, Local: loc, LocalMirror: locm}
	b, err := EncodeEntry(e0)
	if err != nil {
		t.Fatal(err)
	}
	if b[2] != 3 {
		t.Fatalf("version %d, want 3", b[2])
	}
	e, err := DecodeEntry(b)
	if err != nil || e.LocalGrid != 2 || e.LocalC != 3 || !slices.Equal(e.Local, loc) || !slices.Equal(e.LocalMirror, locm) || e.Mirror[3] != vs[1][3] {
		t.Fatalf("decode: %+v %v", e, err)
	}
	for n := 0; n < len(b); n++ {
		if _, err := DecodeEntry(b[:n]); err == nil {
			t.Fatalf("truncation to %d accepted", n)
		}
	}
	c := bytes.Clone(b)
	c[2] = 2
	if _, err := DecodeEntry(c); err == nil {
		t.Fatal("version 2 with local bytes accepted")
	}
	bad := []Entry{
		{Model: "m", Vector: vs[0], LocalGrid: 2, LocalC: 3, Local: loc, LocalMirror: locm},                // no mirror
		{Model: "m", Vector: vs[0], Mirror: vs[1], LocalGrid: 2, LocalC: 2, Local: loc, LocalMirror: locm}, // shape
		{Model: "m", Vector: vs[0], Mirror: vs[1], LocalGrid: 2, LocalC: 3, Local: loc},                    // one of two
		{Model: "m", Vector: vs[0], Mirror: vs[1], LocalGrid: 1, LocalC: 12, Local: loc, LocalMirror: locm},
	}
	for i, e := range bad {
		if _, err := EncodeEntry(e); err == nil {
			t.Errorf("bad entry %d encoded", i)
		}
	}
}

func FuzzDecode(f *testing.F) {
	v := Synthetic(1, 16, 1, 1, 0, 7)[0]
	b, _ := EncodeEntry(Entry{Model: "m1", Vector: v})
	f.Add(b)
	b2, _ := EncodeEntry(Entry{Model: "", Vector: []float32{1}})
	f.Add(b2)
	f.Add([]byte("IE\x01\x00\x00\x01\x00"))
	vs := Synthetic(2, 16, 1, 1, 0, 9)
	b3, _ := EncodeEntry(Entry{Model: "m2", Vector: vs[0], Mirror: vs[1]})
	f.Add(b3)
	b4, _ := EncodeEntry(Entry{Model: "m3", Vector: vs[0], Mirror: vs[1], LocalGrid: 2, LocalC: 1, Local: []int8{1, -2, 3, 127}, LocalMirror: []int8{-128, 0, 5, 6}})
	f.Add(b4)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes and be usable by an index.
		b2, err := EncodeEntry(e)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("re-encode differs: %v", err)
		}
		x, _ := New(Quantised, len(e.Vector))
		if err := x.Add(1, e.Vector); err != nil {
			t.Fatal(err)
		}
		if _, err := x.Query(e.Vector, 1, 0); err != nil {
			t.Fatal(err)
		}
	})
}
