// Command similar-index measures embed/index at scale with synthetic embeddings: query
// time (p50/p95), memory per vector, and the recall of the quantised index against exact
// search. Run with GOMAXPROCS=2 to match the 2-core target:
//
//	GOMAXPROCS=2 go run ./bench/similar-index -sizes 10000,100000,1000000
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imgfs/imgfs/embed/index"
)

func main() {
	sizes := flag.String("sizes", "10000,100000", "comma-separated index sizes")
	dim := flag.Int("dim", 864, "vector length")
	queries := flag.Int("queries", 200, "queries per size")
	th := flag.Float64("threshold", 0.8, "query threshold")
	k := flag.Int("k", 50, "top k per query")
	exact := flag.Bool("exact", true, "also build the exact index (4*dim bytes per vector)")
	flag.Parse()
	fmt.Printf("GOMAXPROCS=%d dim=%d threshold=%.2f k=%d queries=%d\n", runtime.GOMAXPROCS(0), *dim, *th, *k, *queries)
	fmt.Println("| vectors | kind | build s | query p50 ms | query p95 ms | CPU ms/query p50 | p95 | bytes/vector | recall vs exact |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		run(n, *dim, *queries, float32(*th), *k, *exact)
	}
}

func heap() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func run(n, dim, nq int, th float32, k int, withExact bool) {
	// Groups of 4 near-duplicates (similarity 0.6-0.97 to the group's first) among
	// vectors whose unrelated similarity is about 0.5, like CNN embeddings.
	vs := index.Synthetic(n, dim, 4, 1, 0.7, uint64(n))
	r := rand.New(rand.NewPCG(1, 2))
	qs := make([]index.ID, nq)
	for i := range qs {
		qs[i] = index.ID(r.IntN(n))
	}
	results := map[index.Kind][][]index.Match{}
	kinds := []index.Kind{index.Quantised}
	if withExact {
		kinds = append([]index.Kind{index.Exact}, kinds...)
	}
	for _, kind := range kinds {
		before := heap()
		x, _ := index.New(kind, dim)
		x.Grow(n)
		t0 := time.Now()
		var wg sync.WaitGroup
		w := runtime.GOMAXPROCS(0)
		for p := 0; p < w; p++ {
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				for i := p; i < n; i += w {
					if err := x.Add(index.ID(i), vs[i]); err != nil {
						panic(err)
					}
				}
			}(p)
		}
		wg.Wait()
		build := time.Since(t0)
		mem := heap() - before
		var lat, cpu []time.Duration
		var res [][]index.Match
		for _, q := range qs {
			c0 := cpuTime()
			t := time.Now()
			ms, _ := x.QueryID(q, k, th)
			lat = append(lat, time.Since(t))
			cpu = append(cpu, cpuTime()-c0)
			res = append(res, ms)
		}
		sort.Slice(cpu, func(i, j int) bool { return cpu[i] < cpu[j] })
		results[kind] = res
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		rec := "-"
		if kind == index.Quantised && withExact {
			found, total := 0, 0
			for i, e := range results[index.Exact] {
				got := map[index.ID]bool{}
				for _, m := range res[i] {
					got[m.ID] = true
				}
				for _, m := range e {
					total++
					if got[m.ID] {
						found++
					}
				}
			}
			rec = fmt.Sprintf("%.4f (%d matches)", float64(found)/float64(max(total, 1)), total)
		}
		fmt.Printf("| %d | %v | %.1f | %.2f | %.2f | %.2f | %.2f | %d (estimate %d) | %s |\n", n, kind, build.Seconds(),
			ms(lat[len(lat)/2]), ms(lat[len(lat)*95/100]), ms(cpu[len(cpu)/2]), ms(cpu[len(cpu)*95/100]),
			mem/uint64(n), x.MemoryBytes()/int64(n), rec)
		runtime.KeepAlive(x)
		x = nil
	}
}

// cpuTime is the process's user+system CPU time: on a loaded machine wall time measures the
// other processes; CPU time divided by the cores a query uses is its idle-machine latency.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
