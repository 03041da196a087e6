// Command similar-calibrate chooses the .similar/ threshold on the neardup benchmark: it
// embeds every image exactly as the indexer does (embed.EmbedFile with the default model:
// the vector and the mirror image's vector), puts the vectors in the quantised index the
// mount uses, scores every pair as the indexer does (the better of the plain and the mirror
// alignment), and prints, per threshold, the false-positive rate (over all pairs of images
// from different groups, and per image: the share of images whose .similar/ entry would
// list a wrong photo) next to precision and recall over the (edited copy, original) pairs.
// -preds writes every pair with a score of at least -floor in neardup/score.py's format;
// -hashes writes the pHash/dHash baselines; -bg measures the false-positive rate on
// unrelated background photos (bench/fetch-background.sh) and fits the tail model
// (docs/similar.md). Pairs between the verification floor (-floor-verify) and the threshold
// (-threshold) are verified with the photos' Local descriptors as the indexer does: the
// -preds file's decision column says whether .similar/ shows the pair, and PREDS.rank.tsv
// ranks shown pairs first (score + 1); -bg counts the unrelated pairs the verifier passes.
//
//	bash /work/shared/neardup/make-variants.sh -s dev-v1 /work/shared/neardup/originals /tmp/nd
//	bash bench/fetch-background.sh /tmp/imgfs-bg
//	GOMAXPROCS=2 go run ./bench/similar-calibrate -nd /tmp/nd -preds /tmp/nd-preds.tsv \
//		-hashes /tmp/nd-preds -bg /tmp/imgfs-bg/list.txt
//	python3 /work/shared/neardup/score.py --threshold 0.95 /tmp/nd-preds.tsv /tmp/nd/truth.tsv
package main

import (
	"bufio"
	"encoding/gob"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/imgfs/imgfs/embed"
	"github.com/imgfs/imgfs/embed/index"
	"github.com/imgfs/imgfs/embed/phash"
)

type row struct {
	file, group, transform, role string
}

func main() {
	nd := flag.String("nd", "/tmp/nd", "neardup variant folder (images/ and truth.tsv)")
	cache := flag.String("cache", "/tmp/similar-calibrate.gob", "embedding cache (keyed by model ID)")
	preds := flag.String("preds", "", "write pairs for score.py here")
	floor := flag.Float64("floor", 0.3, "lowest score written to -preds")
	bgList := flag.String("bg", "", "file listing unrelated background photos (one path a line) for the false-positive rate")
	hashPreds := flag.String("hashes", "", "also write pHash and dHash pairs to PREFIX.phash.tsv and PREFIX.dhash.tsv")
	vFloor := flag.Float64("floor-verify", 0.88, "verification floor (fs/similar AutoVerifyFloor of the library)")
	vThresh := flag.Float64("threshold", 0.93, "threshold: pairs at or above it are shown unverified")
	flag.Parse()
	rows := readTruth(filepath.Join(*nd, "truth.tsv"))
	p, err := embed.LocateModel(embed.DefaultModelName)
	check(err)
	m, err := embed.Load(p)
	check(err)
	var files []string
	for _, r := range rows {
		files = append(files, filepath.Join(*nd, "images", r.file))
	}
	if *hashPreds != "" {
		writeHashPreds(files, rows, *hashPreds)
	}
	vecs, locs := embedAll(m, files, *cache)

	score := allPairs(vecs, float32(*floor))
	inliers := verifyPairs(vecs, locs, score, float32(*vFloor))
	shown := func(k [2]int) bool {
		s := score[k]
		in, ok := inliers[k]
		return s >= float32(*vThresh) || ok && s >= float32(*vFloor) && in >= embed.DefaultVerify.MinIn
	}
	if *preds != "" {
		rank, err := os.Create(strings.TrimSuffix(*preds, ".tsv") + ".rank.tsv")
		check(err)
		rw := bufio.NewWriter(rank)
		f, err := os.Create(*preds)
		check(err)
		w := bufio.NewWriter(f)
		for k, s := range score {
			a, b := rows[k[0]], rows[k[1]]
			// score.py ranks (query, reference) pairs; write both orders' natural one.
			if a.role == "ref" && b.role == "query" {
				a, b = b, a
			}
			d, bonus := 0, 0.0
			if shown(k) {
				d, bonus = 1, 1
			}
			fmt.Fprintf(w, "%s\t%s\t%.6f\t%d\n", a.file, b.file, s, d)
			fmt.Fprintf(rw, "%s\t%s\t%.6f\t%d\n", a.file, b.file, float64(s)+bonus, d)
		}
		check(w.Flush())
		check(f.Close())
		check(rw.Flush())
		check(rank.Close())
	}

	// Ground truth: same group = near-duplicates.
	n := len(rows)
	var unrelated, positives int64
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			if vecs[i][0] == nil || vecs[j][0] == nil {
				continue
			}
			if rows[i].group != rows[j].group {
				unrelated++
			} else if (rows[i].role == "query") != (rows[j].role == "query") {
				positives++
			}
		}
	}
	fmt.Printf("model %s, %d images, %d unrelated pairs, %d (edited copy, original) pairs; score = best of plain and mirror alignment\n\n", m.ID(), n, unrelated, positives)
	fmt.Println("| threshold | pair FPR | images listing a wrong match | precision (all pairs) | recall (copy, original) |")
	fmt.Println("|---|---|---|---|---|")
	for _, t := range []float32{0.88, 0.89, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96} {
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
	// The verification stage on DEV (fs/similar: shown = score >= threshold, or score >=
	// floor and verified).
	{
		var fp, tp, qr int64
		for k := range score {
			if !shown(k) {
				continue
			}
			a, b := rows[k[0]], rows[k[1]]
			if a.group != b.group {
				fp++
			} else if (a.role == "query") != (b.role == "query") {
				qr++
			} else {
				tp++
			}
		}
		fmt.Printf("\nverification (floor %.3f, threshold %.3f, %d candidate pairs verified): shown unrelated pairs %d (FPR %.2e), recall (copy, original) %.4f\n\n",
			*vFloor, *vThresh, len(inliers), fp, float64(fp)/float64(unrelated), float64(qr)/float64(positives))
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
	ths := []float32{0.9, 0.92, 0.93, 0.94, 0.95}
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
	if *bgList != "" {
		background(m, vecs, locs, *bgList, *cache+".bg", float32(*vFloor), float32(*vThresh))
	}
}

// allPairs scores every pair of images as the indexer does: the quantised index's score of
// the plain vectors, or of one photo's mirror vector against the other's plain vector,
// whichever is higher (docs/similar.md). Pairs below floor are left out.
func allPairs(vecs [][2][]float32, floor float32) map[[2]int]float32 {
	x, _ := index.New(index.Quantised, len(vecs[0][0]))
	for i, v := range vecs {
		if v[0] != nil {
			x.Add(index.ID(i), v[0])
		}
	}
	score := map[[2]int]float32{}
	put := func(a, b int, s float32) {
		k := [2]int{min(a, b), max(a, b)}
		if s > score[k] {
			score[k] = s
		}
	}
	for _, p := range x.AllPairs(floor) {
		put(int(p.A), int(p.B), p.Score)
	}
	for i, v := range vecs {
		if v[1] == nil {
			continue
		}
		ms, _ := x.Query(v[1], 0, floor)
		for _, m := range ms {
			if int(m.ID) != i {
				put(i, int(m.ID), m.Score)
			}
		}
	}
	return score
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
	Model  string
	Files  []string
	Vecs   [][2][]float32
	Locals [][2]embed.Local
}

// embedAll embeds each file (vector and mirror vector, and their Local descriptors) exactly
// as the indexer does.
func embedAll(m *embed.Model, files []string, cache string) ([][2][]float32, [][2]embed.Local) {
	if f, err := os.Open(cache); err == nil {
		var c cacheFile
		if gob.NewDecoder(bufio.NewReader(f)).Decode(&c) == nil && c.Model == m.ID() && slices.Equal(c.Files, files) {
			f.Close()
			return c.Vecs, c.Locals
		}
		f.Close()
	}
	vecs := make([][2][]float32, len(files))
	locs := make([][2]embed.Local, len(files))
	t0 := time.Now()
	var wg sync.WaitGroup
	ch := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				f, err := os.Open(files[i])
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					continue
				}
				e, err := embed.EmbedFile(m, f)
				f.Close()
				if err != nil {
					fmt.Fprintf(os.Stderr, "%s: %v\n", files[i], err)
					continue
				}
				vecs[i] = [2][]float32{e.Vector, e.Mirror}
				locs[i] = [2]embed.Local{e.Local, e.LocalMirror}
			}
		}()
	}
	for i := range files {
		ch <- i
	}
	close(ch)
	wg.Wait()
	fmt.Fprintf(os.Stderr, "embedded %d images in %v\n", len(files), time.Since(t0).Round(time.Second))
	if f, err := os.Create(cache); err == nil {
		gob.NewEncoder(f).Encode(cacheFile{m.ID(), files, vecs, locs})
		f.Close()
	}
	return vecs, locs
}

// verifyPairs runs the verifier (embed.VerifyEmbeddings, as fs/similar does) on every pair
// scoring at least floor and returns its inlier counts.
func verifyPairs(vecs [][2][]float32, locs [][2]embed.Local, score map[[2]int]float32, floor float32) map[[2]int]int {
	var ks [][2]int
	for k, s := range score {
		if s >= floor {
			ks = append(ks, k)
		}
	}
	ins := make([]int, len(ks))
	var wg sync.WaitGroup
	per := (len(ks) + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
	for lo := 0; lo < len(ks); lo += per {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				a, b := ks[i][0], ks[i][1]
				ea := embed.Embedding{Vector: vecs[a][0], Mirror: vecs[a][1], Local: locs[a][0], LocalMirror: locs[a][1]}
				eb := embed.Embedding{Vector: vecs[b][0], Mirror: vecs[b][1], Local: locs[b][0], LocalMirror: locs[b][1]}
				if v, err := embed.VerifyEmbeddings(ea, eb, embed.DefaultVerify); err == nil {
					ins[i] = v.Inliers
				}
			}
		}(lo, min(lo+per, len(ks)))
	}
	wg.Wait()
	out := make(map[[2]int]int, len(ks))
	for i, k := range ks {
		out[k] = ins[i]
	}
	return out
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// background measures the false-positive rate on unrelated photos. The list has one
// "SOURCE<TAB>PATH" line per photo (bench/fetch-background.sh). Counted are the pairs
// (DEV image, background photo) and the pairs of background photos from different sources:
// photos of one source repeat themselves (mirrored stamps, one picture in two activities), so
// pairs within a source are not known to be unrelated and are left out. Scores are the
// indexer's. An exponential tail is fitted to the exceedances of half the pairs over their
// 1e-3 quantile, checked on the other half, and extrapolated to the expected false matches
// of a 100,000-photo library (5e9 pairs). docs/similar.md.
func background(m *embed.Model, dev [][2][]float32, devLocs [][2]embed.Local, list, cache string, vFloor, vThresh float32) {
	b, err := os.ReadFile(list)
	check(err)
	var files, srcs []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		src, path, ok := strings.Cut(l, "\t")
		if !ok {
			src, path = "background", l
		}
		files, srcs = append(files, path), append(srcs, src)
	}
	bg, bgLocs := embedAll(m, files, cache)
	nd := len(dev)
	all := append([][2][]float32{}, dev...)
	allLocs := append([][2]embed.Local{}, devLocs...)
	source := make([]string, nd, nd+len(bg))
	perSource := map[string]int{}
	for i, v := range bg {
		if v[0] != nil {
			all = append(all, v)
			allLocs = append(allLocs, bgLocs[i])
			source = append(source, srcs[i])
			perSource[srcs[i]]++
		}
	}
	var total int64
	keys := make([]string, 0, len(perSource))
	for s, n := range perSource {
		keys = append(keys, fmt.Sprintf("%s %d", s, n))
		total += int64(n * nd)
		for s2, n2 := range perSource {
			if s < s2 {
				total += int64(n * n2)
			}
		}
	}
	sort.Strings(keys)
	unrelated := func(a, b int) bool { return b >= nd && (a < nd || source[a] != source[b]) }
	const floor = 0.8
	score := allPairs(all, floor)
	var sc []float32
	var half [2][]float32
	for k, s := range score {
		if !unrelated(k[0], k[1]) {
			continue
		}
		sc = append(sc, s)
		h := (k[0] + k[1]) % 2
		half[h] = append(half[h], s)
	}
	totHalf := float64(total) / 2
	desc := func(x []float32) { sort.Slice(x, func(i, j int) bool { return x[i] > x[j] }) }
	desc(sc)
	desc(half[0])
	desc(half[1])
	fmt.Printf("\nunrelated pairs: background photos per source: %s; %d DEV images; %d pairs (DEV x background and across sources); highest score %.4f\n\n",
		strings.Join(keys, ", "), nd, total, sc[0])
	countGE := func(x []float32, t float32) int { return sort.Search(len(x), func(i int) bool { return x[i] < t }) }
	fmt.Println("| threshold | false pairs | pair FPR | expected false matches, 10k photos | 100k photos |")
	fmt.Println("|---|---|---|---|---|")
	for _, t := range []float32{0.88, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96} {
		c := countGE(sc, t)
		fpr := float64(c) / float64(total)
		fmt.Printf("| %.2f | %d | %.1e | %.0f | %.0f |\n", t, c, fpr, fpr*5e7, fpr*5e9)
	}
	fmt.Println("\nhighest-scoring unrelated pairs:")
	type pr struct {
		s    float32
		a, b int
	}
	var top []pr
	for k, s := range score {
		if unrelated(k[0], k[1]) && s >= 0.93 {
			top = append(top, pr{s, k[0], k[1]})
		}
	}
	sort.Slice(top, func(i, j int) bool { return top[i].s > top[j].s })
	name := func(i int) string {
		if i < nd {
			return "DEV#" + fmt.Sprint(i)
		}
		return source[i] + ":" + filepath.Base(files[i-nd])
	}
	for i, p := range top {
		if i < 12 {
			fmt.Printf("  %.4f %s %s\n", p.s, name(p.a), name(p.b))
		}
	}
	// Exponential tail fitted on half 0 above its 1e-3 quantile, checked on half 1.
	fit := half[0]
	k := int(1e-3 * totHalf)
	u := fit[k]
	var mean float64
	for _, s := range fit[:k] {
		mean += float64(s - u)
	}
	sigma := mean / float64(k)
	pu := float64(k) / totHalf
	tail := func(t float64) float64 { return pu * math.Exp(-(t-float64(u))/sigma) }
	fmt.Printf("\ntail model (fitted on half the pairs): P(score >= t) = %.1e * exp(-(t - %.4f) / %.5f)\n\n", pu, u, sigma)
	fmt.Println("| threshold | predicted false pairs (other half) | observed |")
	fmt.Println("|---|---|---|")
	for _, t := range []float64{float64(u) + 0.005, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95} {
		fmt.Printf("| %.3f | %.1f | %d |\n", t, tail(t)*totHalf, countGE(half[1], float32(t)))
	}
	fmt.Println("\n| threshold | tail-model pair FPR | expected false matches, 100k photos |")
	fmt.Println("|---|---|---|")
	for _, t := range []float64{0.93, 0.94, 0.95, 0.96, 0.97, 0.98} {
		fmt.Printf("| %.2f | %.1e | %.1f |\n", t, tail(t), tail(t)*5e9)
	}
	verifyBackground(all, allLocs, score, unrelated, total, nd, tail, vFloor, vThresh, name)
}

// verifyBackground measures the verification stage on the unrelated pairs: how many the
// verifier passes among the candidates from each floor up to the threshold, and a geometric
// tail of the candidates' inlier counts (fitted on half the candidates, checked on the
// other half) for the per-candidate false-pass rate that 2.9 million pairs cannot measure
// at a 100,000-photo library's level (docs/similar.md, Verification).
func verifyBackground(all [][2][]float32, locs [][2]embed.Local, score map[[2]int]float32, unrelated func(a, b int) bool, total int64, nd int, tail func(float64) float64, vFloor, vThresh float32, name func(int) string) {
	cand := map[[2]int]float32{}
	for k, s := range score {
		if unrelated(k[0], k[1]) && s >= 0.88 {
			cand[k] = s
		}
	}
	ins := verifyPairs(all, locs, cand, 0.88)
	K := embed.DefaultVerify.MinIn
	fmt.Printf("\nverification of the unrelated pairs (%d pairs scoring >= 0.88 verified; pass: >= %d inliers)\n\n", len(ins), K)
	fmt.Println("| floor | candidates below the threshold | verified (false) | per-candidate pass rate | shown unrelated pairs at the threshold too | pair FPR | DEV x background: candidates, verified, pass rate |")
	fmt.Println("|---|---|---|---|---|---|---|")
	above := 0
	for _, s := range cand {
		if s >= vThresh {
			above++
		}
	}
	for _, f := range []float32{0.88, 0.89, 0.9, 0.91, 0.92, 0.93} {
		var c, pass, cDev, passDev int
		for k, s := range cand {
			if s < f || s >= vThresh {
				continue
			}
			c++
			if k[0] < nd {
				cDev++
			}
			if ins[k] >= K {
				pass++
				if k[0] < nd {
					passDev++
				}
			}
		}
		fmt.Printf("| %.2f | %d | %d | %.1e | %d | %.1e | %d, %d, %.1e |\n", f, c, pass, float64(pass)/float64(max(c, 1)), pass+above, float64(pass+above)/float64(total),
			cDev, passDev, float64(passDev)/float64(max(cDev, 1)))
	}
	type vp struct {
		k  [2]int
		in int
	}
	var vps []vp
	for k, in := range ins {
		if in >= K && cand[k] < vThresh {
			vps = append(vps, vp{k, in})
		}
	}
	sort.Slice(vps, func(i, j int) bool {
		if (vps[i].k[0] < nd) != (vps[j].k[0] < nd) {
			return vps[i].k[0] < nd
		}
		return vps[i].in > vps[j].in
	})
	fmt.Println("\nverified unrelated pairs (DEV x background first, then most inliers):")
	for i, p := range vps {
		if i < 40 {
			fmt.Printf("  %d inliers, score %.4f: %s %s\n", p.in, cand[p.k], name(p.k[0]), name(p.k[1]))
		}
	}
	// Inlier counts of the candidates from 0.88: geometric tail over u, fitted on half.
	var half [2][]int
	for k, in := range ins {
		h := (k[0] + k[1]) % 2
		half[h] = append(half[h], in)
	}
	const u = 6
	var nU, excess float64
	for _, in := range half[0] {
		if in >= u {
			nU++
			excess += float64(in - u)
		}
	}
	pu := nU / float64(len(half[0]))
	q := (excess / nU) / (1 + excess/nU) // geometric: P(in >= u+j | in >= u) = q^j
	model := func(k int) float64 { return pu * math.Pow(q, float64(k-u)) }
	fmt.Printf("\ninlier tail (candidates >= 0.88, fitted on half): P(inliers >= k) = %.2e * %.3f^(k-%d)\n\n", pu, q, u)
	fmt.Println("| k | predicted candidates (other half) | observed |")
	fmt.Println("|---|---|---|")
	for k := u; k <= 20; k += 2 {
		obs := 0
		for _, in := range half[1] {
			if in >= k {
				obs++
			}
		}
		fmt.Printf("| %d | %.1f | %d |\n", k, model(k)*float64(len(half[1])), obs)
	}
	fmt.Printf("\nexpected false matches at 100,000 photos (5e9 pairs), threshold 0.956 unverified plus candidates from the floor verified at the modelled pass rate %.1e:\n", model(K))
	for _, f := range []float64{0.92, 0.93, 0.94} {
		fmt.Printf("  floor %.2f: %.1f (threshold) + %.1f (verified)\n", f, tail(0.956)*5e9, (tail(f)-tail(0.956))*5e9*model(K))
	}
}

// writeHashPreds writes the pHash and dHash pairs (score 1 - hamming/64) of the DEV images,
// decoded as for embedding, in score.py's format: the baselines of docs/similar.md's table.
func writeHashPreds(files []string, rows []row, prefix string) {
	hs := make([][2]uint64, len(files))
	okh := make([]bool, len(files))
	for i, f := range files {
		r, err := os.Open(f)
		check(err)
		img, err := embed.DecodeImage(r)
		r.Close()
		if err != nil {
			continue
		}
		p, d := phash.Hashes(img)
		hs[i], okh[i] = [2]uint64{p, d}, true
	}
	for k, name := range []string{"phash", "dhash"} {
		f, err := os.Create(prefix + "." + name + ".tsv")
		check(err)
		w := bufio.NewWriter(f)
		for q := range rows {
			if rows[q].role != "query" || !okh[q] {
				continue
			}
			for r := range rows {
				if rows[r].role == "ref" && okh[r] {
					fmt.Fprintf(w, "%s\t%s\t%.6f\n", rows[q].file, rows[r].file, phash.Similarity(hs[q][k], hs[r][k]))
				}
			}
		}
		check(w.Flush())
		check(f.Close())
	}
}
