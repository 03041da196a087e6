package review

// Benchmarks for docs/review.md, "Performance": the page's data for a vault with 1,000
// groups, and one group's thumbnails for 12 MP JPEGs (on a local directory; through a
// mount: bench/review.sh).
//
//	go test -run '^$' -bench . -benchtime 20x ./fs/review/

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/imgfs/imgfs/fs/similar"
)

// photoJPEG is a w x h JPEG with gradients and noise (about the size of a camera's).
func photoJPEG(w, h int, seed uint64) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(seed, 1))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			n := uint8(r.IntN(24))
			img.SetRGBA(x, y, color.RGBA{uint8(x*255/w) + n, uint8(y*255/h) + n, uint8(uint64(x+y)*seed%255) + n, 255})
		}
	}
	var b bytes.Buffer
	jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	return b.Bytes()
}

func benchServer(b *testing.B, dir string, pairs []similar.PairOut) *testServer {
	s, err := New(Config{Mount: dir, Backend: &fakeBackend{pairs: pairs}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := s.Listen()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	base := fmt.Sprintf("http://127.0.0.1:%d", s.port)
	return &testServer{Server: s, base: base, dir: dir}
}

func (ts *testServer) fetch(b *testing.B, path string) []byte {
	req, _ := http.NewRequest("GET", ts.base+path, nil)
	req.Header.Set("X-Imgfs-Token", ts.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		b.Fatalf("%s: %d %s", path, resp.StatusCode, body)
	}
	return body
}

// BenchmarkPage1000Groups: the page, its script, and the first page of groups (fresh: the
// pairs asked again and grouped) for 1,000 groups of 3 photos (3,000 pairs, 3,000 photos).
func BenchmarkPage1000Groups(b *testing.B) {
	dir := b.TempDir()
	small := photoJPEG(640, 480, 3)
	var pairs []similar.PairOut
	for g := 0; g < 1000; g++ {
		var ps []string
		for k := 0; k < 3; k++ {
			p := fmt.Sprintf("d%02d/g%04d-%d.jpg", g%50, g, k)
			os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
			os.WriteFile(filepath.Join(dir, p), small, 0o644)
			ps = append(ps, p)
		}
		s := 0.93 + float32(g%70)/1000
		pairs = append(pairs, similar.PairOut{A: ps[0], B: ps[1], Score: s, Tier: similar.Tier(s, false)},
			similar.PairOut{A: ps[0], B: ps[2], Score: s - 0.001, Tier: similar.Tier(s-0.001, false)},
			similar.PairOut{A: ps[1], B: ps[2], Score: s - 0.002, Tier: similar.Tier(s-0.002, false)})
	}
	ts := benchServer(b, dir, pairs)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ts.fetch(b, "/")
		ts.fetch(b, "/static/app.js")
		ts.fetch(b, "/static/app.css")
		ts.fetch(b, "/api/groups?fresh=1&page=0")
	}
}

var bigOnce sync.Once
var bigJPEGs [3][]byte

// BenchmarkThumbs12MP: one group's three thumbnails (fetched at once, as the browser does)
// from 12 MP (4000x3000) JPEGs, with a cold thumbnail cache each time.
func BenchmarkThumbs12MP(b *testing.B) {
	bigOnce.Do(func() {
		for i := range bigJPEGs {
			bigJPEGs[i] = photoJPEG(4000, 3000, uint64(i+1))
		}
	})
	dir := b.TempDir()
	for i, j := range bigJPEGs {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("big%d.jpg", i)), j, 0o644)
	}
	b.Logf("12 MP JPEGs of %d, %d, %d bytes", len(bigJPEGs[0]), len(bigJPEGs[1]), len(bigJPEGs[2]))
	ts := benchServer(b, dir, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ts.thumbs = newThumbCache(64 << 20)
		var wg sync.WaitGroup
		for k := range bigJPEGs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ts.fetch(b, fmt.Sprintf("/thumb?path=big%d.jpg", k))
			}()
		}
		wg.Wait()
	}
}
