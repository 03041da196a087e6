package similar

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/imgfs/imgfs/embed/index"
)

// mirrorFake embeds fake images like fakeEmbedder, plus a mirror vector. Variant 99 of a
// group is the left-right mirror of its original: its plain vector is the original's
// mirror vector and the other way round, and the two plain vectors are unrelated (as a
// CNN's are: docs/similar.md).
type mirrorFake struct{ fakeEmbedder }

func mirrorSpace(g int) []float32 { return index.Synthetic(1, fakeDim, 1, 1, 0, uint64(g)+5000)[0] }

func (e *mirrorFake) EmbedReaderMirror(r io.Reader) ([]float32, []float32, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, err
	}
	var g, v int
	if _, err := fmt.Sscanf(string(b[8:]), "%d %d", &g, &v); err != nil {
		return nil, nil, err
	}
	e.calls.Add(1)
	orig, _ := e.fakeEmbedder.EmbedReader(bytes.NewReader(fakeImage(g, 0)))
	if v == 99 {
		return mirrorSpace(g), orig, nil
	}
	vec, err := e.fakeEmbedder.EmbedReader(bytes.NewReader(b))
	return vec, mirrorSpace(g), err
}

// plainOnly is mirrorFake without its mirror vectors (an Embedder only).
type plainOnly struct{ m *mirrorFake }

func (p plainOnly) ID() string { return p.m.ID() }
func (p plainOnly) Dim() int   { return p.m.Dim() }
func (p plainOnly) EmbedReader(r io.Reader) ([]float32, error) {
	v, _, err := p.m.EmbedReaderMirror(r)
	return v, err
}

// TestMirrorMatch: a mirrored copy is found whichever copy arrives first, in the graph built
// at the next mount, and by a query below the mount's threshold; the plain embedder (no
// mirror vector) does not find it, so the test can fail.
func TestMirrorMatch(t *testing.T) {
	for _, withMirror := range []bool{true, false} {
		v := newFakeVault()
		mf := &mirrorFake{fakeEmbedder{id: "fake/m"}}
		var e Embedder = plainOnly{mf}
		if withMirror {
			e = mf
		}
		x := startWith(t, v, e)
		for _, f := range []struct {
			p    string
			g, n int
		}{
			{"a/orig.jpg", 1, 0}, {"a/mirror.jpg", 1, 99}, // original first
			{"b/mirror.jpg", 2, 99}, {"b/orig.jpg", 2, 0}, // mirror first
			{"c/other.jpg", 3, 0},
		} {
			x.OnSealed(v.write(f.p, fakeImage(f.g, f.n)))
		}
		wait(t, x)
		check := func(x *Indexer, when string, threshold float32) {
			t.Helper()
			for _, pair := range [][2]string{{"a/orig.jpg", "a/mirror.jpg"}, {"b/mirror.jpg", "b/orig.jpg"}} {
				for k := 0; k < 2; k++ {
					ino, _ := v.Resolve(pair[k])
					ms, err := x.Query(ino, threshold, 0)
					if err != nil {
						t.Fatal(err)
					}
					got := paths(ms)
					found := len(got) == 1 && got[0] == pair[1-k]
					if found != withMirror {
						t.Errorf("mirror embedder %v, %s, threshold %v: %s matches %v", withMirror, when, threshold, pair[k], got)
					}
					if withMirror && ms[0].Score < 0.99 {
						t.Errorf("%s: mirrored copy scored %v", when, ms[0].Score)
					}
				}
			}
			pairs := x.AllPairs(threshold)
			if withMirror && len(pairs) != 2 || !withMirror && len(pairs) != 0 {
				t.Errorf("%s, threshold %v: pairs %+v", when, threshold, pairs)
			}
		}
		check(x, "while indexing", 0)
		check(x, "while indexing", fakeThreshold-0.1)
		x.Close()
		x2 := startWith(t, v, e) // graph rebuilt from the stored vectors
		check(x2, "after restart", 0)
		check(x2, "after restart", fakeThreshold-0.1)
	}
}
