// Command similar-calibrate chooses the .similar/ threshold on the neardup benchmark: it
// embeds every image exactly as the indexer does (embed.EmbedFile with the default model),
// puts the vectors in the quantised index the mount uses, and prints, per threshold, the
// false-positive rate (over all pairs of images from different groups, and per image: the
// share of images whose .similar/ entry would list a wrong photo) next to precision and
// recall over the (edited copy, original) pairs. -preds writes every pair with a score of
// at least -floor in neardup/score.py's format.
//
//	bash /work/shared/neardup/make-variants.sh -s dev-v1 /work/shared/neardup/originals /tmp/nd
//	GOMAXPROCS=2 go run ./bench/similar-calibrate -nd /tmp/nd -preds /tmp/nd-preds.tsv
//	python3 /work/shared/neardup/score.py /tmp/nd-preds.tsv /tmp/nd/truth.tsv
package main

import (
	"bufio"
	"encoding/gob"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/imgfs/imgfs/embed"
	"github.com/imgfs/imgfs/embed/index"
)

type row struct {
	file, group, transform, role string
}

func main() {
	nd := flag.String("nd", "/tmp/nd", "neardup variant folder (images/ and truth.tsv)")
	cache := flag.String("cache", "/tmp/similar-calibrate.gob", "embedding cache (keyed by model ID)")
	preds := flag.String("preds", "", "write pairs for score.py here")
	floor := flag.Float64("floor", 0.3, "lowest score written to -preds")
	flag.Parse()
	rows := readTruth(filepath.Join(*nd, "truth.tsv"))
	p, err := embed.LocateModel(embed.DefaultModelName)
	check(err)
	m, err := embed.Load(p)
	check(err)
	vecs := embedAll(m, *nd, rows, *cache)

	x, _ := index.New(index.Quantised, m.Dim())
	for i, v := range vecs {
		if v != nil {
			x.Add(index.ID(i), v)
		}
	}
	pairs := x.AllPairs(float32(*floor))
	score := map[[2]int]float32{}
	for _, p := range pairs {
		score[[2]int{int(p.A), int(p.B)}] = p.Score
	}
	if *preds != "" {
		f, err := os.Create(*preds)
		check(err)
		w := bufio.NewWriter(f)
		for _, p := range pairs {
			a, b := rows[p.A], rows[p.B]
			// score.py ranks (query, reference) pairs; write both orders' natural one.
			if a.role == "ref" && b.role == "query" {
				a, b = b, a
			}
			fmt.Fprintf(w, "%s\t%s\t%.6f\n", a.file, b.file, p.Score)
		}
		check(w.Flush())
		check(f.Close())
	}

	// Ground truth: same group = near-duplicates.
	n := len(rows)
	var unrelated, positives int64
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			if vecs[i] == nil || vecs[j] == nil {
				continue
			}
			if rows[i].group != rows[j].group {
				unrelated++
			} else if (rows[i].role == "query") != (rows[j].role == "query") {
				positives++
			}
		}
	}
	fmt.Printf("model %s, %d images, %d unrelated pairs, %d (edited copy, original) pairs\n\n", m.ID(), n, unrelated, positives)
	fmt.Println("| threshold | pair FPR | images listing a wrong match | precision (all pairs) | recall (copy, original) |")
	fmt.Println("|---|---|---|---|---|")
	for _, t := range []float32{0.5, 0.55, 0.6, 0.65, 0.7, 0.72, 0.75, 0.78, 0.8, 0.82, 0.85, 0.88, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95} {
		var fp, tp, tpQR int64
		wrong := map[int]bool{}
		for k, s := range score {
			if s < t {
				continue
			}
			a, b := rows[k[0]], rows[k[1]]
			if a.group != b.group {
				fp++
				wrong[k[0]], wrong[k[1]] = true, true
			} else {
				tp++
				if (a.role == "query") != (b.role == "query") {
					tpQR++
				}
			}
		}
		prec := float64(tp) / float64(max(tp+fp, 1))
		fmt.Printf("| %.2f | %.2e (%d) | %.2f%% (%d) | %.4f | %.4f |\n", t, float64(fp)/float64(unrelated), fp,
			100*float64(len(wrong))/float64(n), len(wrong), prec, float64(tpQR)/float64(positives))
	}
	// Per transform recall at a few thresholds.
	fmt.Println("\nrecall of (edited copy, original) per transform")
	trs := map[string][2]int{}
	type qr struct{ q, r int }
	var qrs []qr
	ref := map[string]int{}
	for i, r := range rows {
		if r.role == "ref" {
			ref[r.group] = i
		}
	}
	for i, r := range rows {
		if r.role == "query" {
			qrs = append(qrs, qr{i, ref[r.group]})
		}
	}
	ths := []float32{0.9, 0.92, 0.93, 0.95}
	fmt.Printf("| transform | n |")
	for _, t := range ths {
		fmt.Printf(" R@%.2f |", t)
	}
	fmt.Println()
	fmt.Println("|---|---|" + strings.Repeat("---|", len(ths)))
	hits := map[string][]int{}
	for _, p := range qrs {
		tr := rows[p.q].transform
		c := trs[tr]
		c[0]++
		trs[tr] = c
		a, b := min(p.q, p.r), max(p.q, p.r)
		s, ok := score[[2]int{a, b}]
		if hits[tr] == nil {
			hits[tr] = make([]int, len(ths))
		}
		for k, t := range ths {
			if ok && s >= t {
				hits[tr][k]++
			}
		}
	}
	var names []string
	for k := range trs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Printf("| %s | %d |", k, trs[k][0])
		for i := range ths {
			fmt.Printf(" %.2f |", float64(hits[k][i])/float64(trs[k][0]))
		}
		fmt.Println()
	}
}

func readTruth(path string) []row {
	b, err := os.ReadFile(path)
	check(err)
	var rows []row
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(l, "\t")
		if i == 0 || len(f) < 5 {
			continue
		}
		rows = append(rows, row{file: f[0], group: f[1], transform: f[2], role: f[4]})
	}
	return rows
}

type cacheFile struct {
	Model string
	Vecs  [][]float32
}

func embedAll(m *embed.Model, nd string, rows []row, cache string) [][]float32 {
	if f, err := os.Open(cache); err == nil {
		var c cacheFile
		if gob.NewDecoder(bufio.NewReader(f)).Decode(&c) == nil && c.Model == m.ID() && len(c.Vecs) == len(rows) && complete(c.Vecs) {
			f.Close()
			return c.Vecs
		}
		f.Close()
	}
	vecs := make([][]float32, len(rows))
	t0 := time.Now()
	var wg sync.WaitGroup
	ch := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				f, err := os.Open(filepath.Join(nd, "images", rows[i].file))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					continue
				}
				e, err := embed.EmbedFile(m, f)
				f.Close()
				if err != nil {
					fmt.Fprintf(os.Stderr, "%s: %v\n", rows[i].file, err)
					continue
				}
				vecs[i] = e.Vector
			}
		}()
	}
	for i := range rows {
		ch <- i
	}
	close(ch)
	wg.Wait()
	fmt.Fprintf(os.Stderr, "embedded %d images in %v\n", len(rows), time.Since(t0).Round(time.Second))
	if f, err := os.Create(cache); err == nil {
		gob.NewEncoder(f).Encode(cacheFile{m.ID(), vecs})
		f.Close()
	}
	return vecs
}

func complete(vs [][]float32) bool {
	for _, v := range vs {
		if v == nil {
			return false
		}
	}
	return true
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
