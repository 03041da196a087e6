// Command ndeval compares embedding recipes (layer, pooling, spatial grid, flip averaging)
// on the neardup benchmark. It runs the network once per image and per mirror image, caches
// the pooled features, derives each recipe's embeddings, and scores all (query, reference)
// cosine pairs with the neardup protocol (muAP and R@P95, computed here exactly as
// neardup/score.py does; -tsv writes the pairs for score.py itself). Used to choose the
// default recipe; see docs/embed.md.
//
//	go run ./embed/cmd/ndeval -nd /tmp/nd -out /tmp/ndeval
package main

import (
	"bufio"
	"encoding/gob"
	"flag"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/imgfs/imgfs/embed"
)

var layers = []string{"block_6_expand_relu", "block_10_expand_relu", "block_12_add", "block_13_expand_relu", "block_16_project_BN", "out_relu"}
var pools = []string{"mean", "gem3", "max"}

// Regions: 0 = whole map, 1..4 = 2x2 grid, 5..13 = 3x3 grid.
const nRegions = 14

// Feats holds, per layer, pool, flip and region, the pooled vector.
type Feats struct {
	V [][][2][nRegions][]float32
}

func main() {
	nd := flag.String("nd", "/tmp/nd", "neardup variant folder (images/ and truth.tsv)")
	modelPath := flag.String("model", "models/mobilenet_v2.imgfsmodel", "model file")
	outDir := flag.String("out", "/tmp/ndeval", "cache and output folder")
	match := flag.String("match", "", "only recipes whose name matches this regexp")
	tsv := flag.Bool("tsv", false, "write each recipe's pairs as TSV for score.py")
	flag.Parse()
	files, groups, roles, transforms := readTruth(filepath.Join(*nd, "truth.tsv"))
	fs := make([]Feats, len(files))
	cache := filepath.Join(*outDir, "feats2.gob")
	if cf, err := os.Open(cache); err == nil {
		if err := gob.NewDecoder(bufio.NewReader(cf)).Decode(&fs); err != nil {
			fail(err)
		}
		cf.Close()
	} else {
		m, err := embed.Load(*modelPath)
		if err != nil {
			fail(err)
		}
		computeAll(m, *nd, files, fs)
		os.MkdirAll(*outDir, 0o755)
		cf, _ := os.Create(cache)
		bw := bufio.NewWriter(cf)
		if err := gob.NewEncoder(bw).Encode(fs); err != nil {
			fail(err)
		}
		bw.Flush()
		cf.Close()
	}
	re := regexp.MustCompile(*match)
	for _, r := range recipes() {
		if !re.MatchString(r.name) {
			continue
		}
		emb := make([][]float32, len(files))
		for i := range files {
			emb[i] = r.build(&fs[i])
		}
		var qs, rs []int
		for i := range files {
			if roles[i] == "query" {
				qs = append(qs, i)
			} else if roles[i] == "ref" {
				rs = append(rs, i)
			}
		}
		type item struct {
			s  float32
			ok bool
		}
		items := make([]item, 0, len(qs)*len(rs))
		top1 := map[string][2]int{}
		var w *bufio.Writer
		if *tsv {
			f, _ := os.Create(filepath.Join(*outDir, regexp.MustCompile(`[^A-Za-z0-9_.-]`).ReplaceAllString(r.name, "_")+".tsv"))
			defer f.Close()
			w = bufio.NewWriter(f)
			defer w.Flush()
		}
		for _, q := range qs {
			var bestOK, bestWrong float32 = -2, -2
			for _, ref := range rs {
				s := embed.Cosine(emb[q], emb[ref])
				ok := groups[q] == groups[ref]
				items = append(items, item{s, ok})
				if ok {
					bestOK = s
				} else {
					bestWrong = max(bestWrong, s)
				}
				if w != nil {
					fmt.Fprintf(w, "%s\t%s\t%.6f\n", files[q], files[ref], s)
				}
			}
			t := top1[transforms[q]]
			t[1]++
			if bestOK > bestWrong {
				t[0]++
			}
			top1[transforms[q]] = t
		}
		sort.Slice(items, func(a, b int) bool { return items[a].s > items[b].s })
		var ap, rp95 float64
		tp, fp := 0, 0
		for i := 0; i < len(items); {
			j := i
			btp := 0
			for j < len(items) && items[j].s == items[i].s {
				if items[j].ok {
					btp++
				} else {
					fp++
				}
				j++
			}
			tp += btp
			prec := float64(tp) / float64(tp+fp)
			ap += float64(btp) * prec
			if prec >= 0.95 {
				rp95 = max(rp95, float64(tp)/float64(len(qs)))
			}
			i = j
		}
		var worst []string
		for t, v := range top1 {
			if float64(v[0])/float64(v[1]) < 0.9 {
				worst = append(worst, fmt.Sprintf("%s=%.2f", t, float64(v[0])/float64(v[1])))
			}
		}
		sort.Strings(worst)
		fmt.Printf("%-58s dim=%-5d muAP=%.4f R@P95=%.4f top1<0.9: %s\n", r.name, len(emb[0]), ap/float64(len(qs)), rp95, strings.Join(worst, " "))
	}
}

type part struct {
	layer, pool int
	regions     []int
	weight      float32
	flip        bool // this part alone is flip-averaged
}

type recipe struct {
	name  string
	parts []part
	flip  bool
}

var (
	global = []int{0}
	grid2  = []int{1, 2, 3, 4}
	grid3  = []int{5, 6, 7, 8, 9, 10, 11, 12, 13}
)

func recipes() []recipe {
	var rs []recipe
	regs := []struct {
		name string
		r    []int
	}{{"global", global}, {"grid2", grid2}, {"grid3", grid3}}
	for li, l := range layers {
		for pi, p := range pools {
			for _, g := range regs {
				for _, fl := range []bool{false, true} {
					n := fmt.Sprintf("%s:%s:%s", l, p, g.name)
					if fl {
						n += ":flip"
					}
					rs = append(rs, recipe{name: n, parts: []part{{li, pi, g.r, 1, false}}, flip: fl})
				}
			}
			for _, wg := range []float32{0.5, 1, 2} {
				for _, fl := range []bool{false, true} {
					n := fmt.Sprintf("%s:%s:global+%.1f*grid3", l, p, wg)
					if fl {
						n += ":flip"
					}
					rs = append(rs, recipe{name: n, parts: []part{{li, pi, global, 1, false}, {li, pi, grid3, wg, false}}, flip: fl})
					n = fmt.Sprintf("%s:%s:global+%.1f*grid2", l, p, wg)
					if fl {
						n += ":flip"
					}
					rs = append(rs, recipe{name: n, parts: []part{{li, pi, global, 1, false}, {li, pi, grid2, wg, false}}, flip: fl})
				}
			}
		}
	}
	for _, li := range []int{1, 2, 3} {
		for _, pi := range []int{1, 2} {
			for _, wg := range []float32{0.5, 1, 2, 3} {
				rs = append(rs, recipe{name: fmt.Sprintf("%s:%s:global:flip+%.1f*grid3", layers[li], pools[pi], wg),
					parts: []part{{li, pi, global, 1, true}, {li, pi, grid3, wg, false}}})
				rs = append(rs, recipe{name: fmt.Sprintf("%s:%s:global:flip+%.1f*grid2", layers[li], pools[pi], wg),
					parts: []part{{li, pi, global, 1, true}, {li, pi, grid2, wg, false}}})
			}
		}
	}
	rs = append(rs, recipe{name: "block_10_expand_relu:max:global:flip+block_12_add:max:grid3",
		parts: []part{{1, 2, global, 1, true}, {2, 2, grid3, 1, false}}})
	rs = append(rs, recipe{name: "block_10_expand_relu:max:global:flip+2*block_12_add:max:grid3",
		parts: []part{{1, 2, global, 1, true}, {2, 2, grid3, 2, false}}})
	rs = append(rs, recipe{name: "block_12_add:max:grid3+block_16_project_BN:max:global:flip",
		parts: []part{{2, 2, grid3, 1, false}, {4, 2, global, 1, true}}})
	return rs
}

// build concatenates the parts: each region's vector L2-normalised, each part normalised
// and weighted, the whole normalised.
func (r recipe) build(f *Feats) []float32 {
	var out []float32
	for _, p := range r.parts {
		var pv []float32
		for _, reg := range p.regions {
			a := append([]float32(nil), f.V[p.layer][p.pool][0][reg]...)
			if r.flip || p.flip {
				b := f.V[p.layer][p.pool][1][reg]
				for k := range a {
					a[k] = (a[k] + b[k]) / 2
				}
			}
			pv = append(pv, embed.Normalize(a)...)
		}
		embed.Normalize(pv)
		for k := range pv {
			pv[k] *= p.weight
		}
		out = append(out, pv...)
	}
	return embed.Normalize(out)
}

func computeAll(m *embed.Model, nd string, files []string, fs []Feats) {
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				fs[i] = compute(m, filepath.Join(nd, "images", files[i]))
			}
		}()
	}
	for i := range files {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
}

// crop returns the sub-map rows [y0,y1) x cols [x0,x1).
func crop(fm embed.FeatureMap, y0, y1, x0, x1 int) embed.FeatureMap {
	out := embed.FeatureMap{H: y1 - y0, W: x1 - x0, C: fm.C}
	for y := y0; y < y1; y++ {
		out.Data = append(out.Data, fm.Data[(y*fm.W+x0)*fm.C:(y*fm.W+x1)*fm.C]...)
	}
	return out
}

func regionsOf(fm embed.FeatureMap) []embed.FeatureMap {
	rs := []embed.FeatureMap{fm}
	for _, n := range []int{2, 3} {
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				rs = append(rs, crop(fm, i*fm.H/n, (i+1)*fm.H/n, j*fm.W/n, (j+1)*fm.W/n))
			}
		}
	}
	return rs
}

func compute(m *embed.Model, path string) Feats {
	f, err := os.Open(path)
	if err != nil {
		fail(err)
	}
	img, err := embed.DecodeImage(f)
	f.Close()
	if err != nil {
		fail(fmt.Errorf("%s: %v", path, err))
	}
	var out Feats
	out.V = make([][][2][nRegions][]float32, len(layers))
	for li := range layers {
		out.V[li] = make([][2][nRegions][]float32, len(pools))
	}
	for flip := 0; flip < 2; flip++ {
		fms, err := m.FeatureMaps(img, flip == 1, layers...)
		if err != nil {
			fail(err)
		}
		for li, fm := range fms {
			for ri, reg := range regionsOf(fm) {
				out.V[li][0][flip][ri] = embed.PoolMean(reg)
				out.V[li][1][flip][ri] = embed.PoolGeM(reg, 3)
				out.V[li][2][flip][ri] = embed.PoolMax(reg)
			}
		}
	}
	return out
}

func readTruth(path string) (files, groups, roles, transforms []string) {
	b, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	col := map[string]int{}
	for i, h := range strings.Split(lines[0], "\t") {
		col[h] = i
	}
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		files = append(files, f[col["file"]])
		groups = append(groups, f[col["group"]])
		roles = append(roles, f[col["role"]])
		transforms = append(transforms, f[col["transform"]])
	}
	return
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ndeval:", err)
	os.Exit(1)
}

var _ image.Image
