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

// TestAutoThresholds: with verification, the threshold is at least MinVerifiedThreshold and
// the floor 0.88 for small libraries, rising with the library (the candidates per photo and
// the expected false matches, threshold's and verified, stay bounded).
func TestAutoThresholds(t *testing.T) {
	if th, f := AutoThresholds(500); th != MinVerifiedThreshold || f != 0.88 {
		t.Errorf("500 photos: threshold %v, floor %v, want %v and 0.88", th, f, MinVerifiedThreshold)
	}
	prev := float32(0)
	for _, n := range []int{0, 2, 100, 1000, 1500, 2000, 5000, 10_000, 30_000, 100_000, 1_000_000} {
		th, f := AutoThresholds(n)
		pairs := float64(n) * float64(max(n-1, 0)) / 2
		e := ExpectedFalseMatches(n, th)
		if f < th {
			e += pairs * candidateRate(f) * verifyFalsePass
		}
		t.Logf("%d photos: threshold %.3f, floor %.3f, %.1f candidates per photo, %.1f expected false matches", n, th, f, float64(n)*candidateRate(f), e)
		if f < prev || f > th || th < AutoThreshold(n) {
			t.Errorf("%d photos: threshold %v, floor %v (previous floor %v)", n, th, f, prev)
		}
		prev = f
		if f < th && (float64(n)*candidateRate(f) > MaxCandidatesPerPhoto || e >= MaxExpectedFalse) {
			t.Errorf("%d photos: floor %v breaks its bounds", n, f)
		}
	}
	if th, f := AutoThresholds(1_000_000); th != AutoThreshold(1_000_000) || f != th {
		t.Errorf("1,000,000 photos: threshold %v, floor %v: no floor fits, so no verification", th, f)
	}
}
