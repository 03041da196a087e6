package similar

import (
	"fmt"
	"testing"
)

func TestAutoThreshold(t *testing.T) {
	for _, c := range []struct {
		n    int
		want float32
	}{{0, 0.93}, {1, 0.93}, {1000, 0.93}, {10_000, 0.940}, {100_000, 0.956}, {10_000_000, MaxAutoThreshold}} {
		if got := AutoThreshold(c.n); got != c.want {
			t.Errorf("AutoThreshold(%d) = %v, want %v", c.n, got, c.want)
		}
	}
	// The promise: below the cap, fewer than MaxExpectedFalse expected false matches, and the
	// threshold is the lowest 0.001 step that keeps it.
	for _, n := range []int{3000, 10_000, 50_000, 100_000, 300_000} {
		th := AutoThreshold(n)
		if th == MaxAutoThreshold {
			continue // past the cap (about 190,000 photos) the bound no longer holds: docs/similar.md
		}
		if e := ExpectedFalseMatches(n, th); e >= MaxExpectedFalse {
			t.Errorf("%d photos at %v: %.1f expected false matches", n, th, e)
		}
		if th > MinAutoThreshold {
			if e := ExpectedFalseMatches(n, th-0.001); e < MaxExpectedFalse {
				t.Errorf("%d photos: %v is not the lowest threshold (%.1f at %v)", n, th, e, th-0.001)
			}
		}
	}
}

// TestIndexerAutoThreshold: without a configured threshold the indexer takes AutoThreshold
// of the number of photos at Start; a configured one is kept.
func TestIndexerAutoThreshold(t *testing.T) {
	v := newFakeVault()
	const n = 3000
	for i := 0; i < n; i++ {
		v.write(fmt.Sprintf("p/%d.jpg", i), fakeImage(i, 0))
	}
	ino := v.write("notes.txt", []byte("not an image"))
	var id [32]byte
	id, _, _ = v.ContentID(ino)
	v.PutAux(TableNoImage, id[:], []byte("fake/1"))
	for _, c := range []struct {
		cfg, want float32
	}{{0, AutoThreshold(n)}, {0.95, 0.95}} {
		x, err := New(Config{Embedder: &fakeEmbedder{id: "fake/1"}, Logger: quiet(), Threshold: c.cfg})
		if err != nil {
			t.Fatal(err)
		}
		if err := x.Start(v); err != nil {
			t.Fatal(err)
		}
		<-x.GraphReady()
		if got := x.Threshold(); got != c.want || got == DefaultThreshold {
			t.Errorf("configured %v: threshold %v, want %v", c.cfg, got, c.want)
		}
		x.Close()
	}
}

// TestAutoVerifyFloor: 0.88 for small libraries, rising with the library (the candidates per
// photo and the verifier's expected false passes stay bounded), never above the threshold.
func TestAutoVerifyFloor(t *testing.T) {
	if f := AutoVerifyFloor(500); f != 0.88 {
		t.Errorf("500 photos: floor %v, want 0.88", f)
	}
	prev := float32(0)
	for _, n := range []int{0, 2, 100, 1000, 2000, 5000, 10_000, 30_000, 100_000, 1_000_000} {
		f, th := AutoVerifyFloor(n), AutoThreshold(n)
		t.Logf("%d photos: floor %.3f, threshold %.3f", n, f, th)
		if f < prev || f > th {
			t.Errorf("%d photos: floor %v (previous %v, threshold %v)", n, f, prev, th)
		}
		prev = f
		pairs := float64(n) * float64(max(n-1, 0)) / 2
		if f < th {
			rate := candidateRate(f)
			if float64(n)*rate > MaxCandidatesPerPhoto || pairs*rate*verifyFalsePass+ExpectedFalseMatches(n, th) >= MaxExpectedFalse {
				t.Errorf("%d photos: floor %v breaks its bounds", n, f)
			}
		}
	}
}
