package similar

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"testing"

	"github.com/imgfs/imgfs/embed"
	"github.com/imgfs/imgfs/embed/index"
)

// verifyFake embeds fake images like fakeEmbedder, with mirror vectors and Local
// descriptors (a FullEmbedder). Variants 50 and 51 of a group score between the verification
// floor and the threshold with the group's original; variant 50 has the original's Local
// descriptor (an edit the verifier confirms), variant 51 a descriptor of its own (an
// unrelated photo that happens to score as high).
type verifyFake struct{ fakeEmbedder }

const (
	verifyTestFloor     = 0.6
	verifyTestThreshold = 0.8
)

func fakeLocal(seed int64) embed.Local {
	r := rand.New(rand.NewSource(seed))
	fm := embed.FeatureMap{H: 14, W: 14, C: 16, Data: make([]float32, 14*14*16)}
	for i := range fm.Data {
		fm.Data[i] = r.Float32()
	}
	return embed.LocalOf(fm, embed.LocalGrid)
}

func (e *verifyFake) EmbedReaderFull(r io.Reader) (embed.Embedding, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return embed.Embedding{}, err
	}
	var g, v int
	if _, err := fmt.Sscanf(string(b[8:]), "%d %d", &g, &v); err != nil {
		return embed.Embedding{}, err
	}
	vec, err := e.fakeEmbedder.EmbedReader(bytes.NewReader(b))
	if err != nil {
		return embed.Embedding{}, err
	}
	loc := fakeLocal(int64(g))
	if v == 50 || v == 51 {
		base, _ := e.fakeEmbedder.EmbedReader(bytes.NewReader(fakeImage(g, 0)))
		p := index.Synthetic(1, fakeDim, 1, 0, 0, uint64(g*100+v))[0]
		for i := range vec {
			vec[i] = base[i] + 1.1*p[i]
		}
		embed.Normalize(vec)
		if v == 51 {
			loc = fakeLocal(int64(g*1000 + v))
		}
	}
	mirror := mirrorSpace(g)
	return embed.Embedding{Vector: vec, Mirror: mirror, Local: loc, LocalMirror: fakeLocal(int64(-g))}, nil
}

// TestVerifiedMatches: a pair between the verification floor and the threshold is a match
// (.similar/, imgfs similar, --all) when its Local descriptors confirm it, and not when they
// do not, while indexing and in the graph built at the next mount; an explicit threshold
// below the mount's lists both, unverified; with verification off neither is listed.
func TestVerifiedMatches(t *testing.T) {
	for _, floor := range []float32{verifyTestFloor, -1} {
		v := newFakeVault()
		e := &verifyFake{fakeEmbedder{id: "fake/v"}}
		open := func() *Indexer {
			return startConfig(t, v, Config{Embedder: e, Logger: quiet(), Workers: 2, Threshold: verifyTestThreshold, VerifyFloor: floor})
		}
		x := open()
		for _, f := range []struct {
			p    string
			g, n int
		}{{"orig.jpg", 1, 0}, {"edit.jpg", 1, 50}, {"lookalike.jpg", 1, 51}, {"other.jpg", 2, 0}} {
			x.OnSealed(v.write(f.p, fakeImage(f.g, f.n)))
		}
		wait(t, x)
		check := func(x *Indexer, when string) {
			t.Helper()
			all := query(t, x, v, "orig.jpg")
			ino, _ := v.Resolve("orig.jpg")
			below, err := x.Query(ino, verifyTestFloor, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range below {
				if m.Path != "other.jpg" && (m.Score < verifyTestFloor || m.Score >= verifyTestThreshold) {
					t.Fatalf("%s: %s scores %v, outside [floor, threshold): the test's vectors are wrong", when, m.Path, m.Score)
				}
			}
			want := "[edit.jpg]"
			if floor < 0 {
				want = "[]"
			}
			if got := fmt.Sprint(paths(all)); got != want {
				t.Errorf("floor %v, %s: orig.jpg matches %s, want %s", floor, when, got, want)
			}
			if got := fmt.Sprint(paths(below)); got != "[edit.jpg lookalike.jpg]" && got != "[lookalike.jpg edit.jpg]" {
				t.Errorf("floor %v, %s: at an explicit %v, matches %s, want both (unverified)", floor, when, verifyTestFloor, got)
			}
			if n := len(x.AllPairs(0)); n != len(paths(all)) {
				t.Errorf("floor %v, %s: %d pairs", floor, when, n)
			}
		}
		check(x, "while indexing")
		x.Close()
		check(open(), "after restart")
	}
}
