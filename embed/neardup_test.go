package embed

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/imgfs/imgfs/embed/internal/neardup"
	"github.com/imgfs/imgfs/embed/phash"
)

// minNearDupMuAP is the quality bar on the neardup DEV set (pHash reaches 0.787).
const minNearDupMuAP = 0.90

// TestNearDupQuality embeds every image of a neardup variant folder (made by
// neardup/make-variants.sh: images/ and truth.tsv) and scores the cosine similarities with
// the benchmark's protocol. Runs only when IMGFS_NEARDUP names that folder (about 1 minute
// on 2 cores). IMGFS_NEARDUP_PREDS=PREFIX also writes the pairs of the embedding, pHash and
// dHash to PREFIX.{embed,phash,dhash}.tsv for neardup/score.py.
func TestNearDupQuality(t *testing.T) {
	dir := os.Getenv("IMGFS_NEARDUP")
	if dir == "" {
		t.Skip("set IMGFS_NEARDUP to a neardup variant folder (images/, truth.tsv) to run")
	}
	m := testModel(t)
	truth, err := neardup.ReadTruth(filepath.Join(dir, "truth.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	embs := make([]Embedding, len(truth))
	errs := make([]error, len(truth))
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				f, err := os.Open(filepath.Join(dir, "images", truth[i].File))
				if err != nil {
					errs[i] = err
					continue
				}
				e, err := EmbedFile(m, f)
				f.Close()
				embs[i], errs[i] = e, err
			}
		}()
	}
	for i := range truth {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", truth[i].File, err)
		}
	}
	t.Logf("embedded %d images in %v (%s, %d dims)", len(truth), time.Since(start).Round(time.Millisecond), m.ID(), m.Dim())
	finders := []struct {
		name string
		sim  func(q, r int) float64
		min  float64
	}{
		// The indexer's score: the better of the plain and the mirror alignment (docs/similar.md).
		{"embed", func(q, r int) float64 {
			return float64(max(Cosine(embs[q].Vector, embs[r].Vector), Cosine(embs[q].Mirror, embs[r].Vector)))
		}, minNearDupMuAP},
		{"phash", func(q, r int) float64 { return phash.Similarity(embs[q].PHash, embs[r].PHash) }, 0.70},
		{"dhash", func(q, r int) float64 { return phash.Similarity(embs[q].DHash, embs[r].DHash) }, 0.70},
	}
	for _, fd := range finders {
		res := neardup.Score(truth, fd.sim)
		var ts []string
		for k := range res.Top1 {
			ts = append(ts, k)
		}
		sort.Strings(ts)
		for _, k := range ts {
			t.Logf("%s top-1 %-22s %.3f", fd.name, k, res.Top1[k])
		}
		t.Logf("%s: muAP=%.4f R@P95=%.4f", fd.name, res.MuAP, res.RP95)
		if res.MuAP < fd.min {
			t.Errorf("%s: muAP %.4f below %.2f", fd.name, res.MuAP, fd.min)
		}
		if p := os.Getenv("IMGFS_NEARDUP_PREDS"); p != "" {
			writePreds(t, p+"."+fd.name+".tsv", truth, fd.sim)
		}
	}
}

// writePreds writes every (query, reference) pair's score for neardup/score.py.
func writePreds(t *testing.T, path string, truth []neardup.Entry, sim func(q, r int) float64) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for q, e := range truth {
		if e.Role != "query" {
			continue
		}
		for r, e2 := range truth {
			if e2.Role == "ref" {
				fmt.Fprintf(w, "%s\t%s\t%.6f\n", e.File, e2.File, sim(q, r))
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}
