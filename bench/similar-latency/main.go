// Command similar-latency measures, on a mounted imgfs, the time from close() of a new
// photo to its appearance in .similar/ (its entry there lists at least one match), p50/p95
// over -n photos written one at a time (the queue otherwise idle). Each photo gets a
// near-duplicate (a half-size re-encode) written and indexed first, so that it has a
// match as soon as it is embedded. bench/similar-latency.sh mounts a fresh vault and runs it.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"
)

func main() {
	mnt := flag.String("mnt", "", "mountpoint of an imgfs mount")
	n := flag.Int("n", 200, "photos")
	bin := flag.String("imgfs", "imgfs", "imgfs binary (for imgfs sync)")
	timeout := flag.Duration("timeout", 60*time.Second, "give up on one photo after this long")
	flag.Parse()
	if *mnt == "" {
		fmt.Fprintln(os.Stderr, "-mnt is required")
		os.Exit(2)
	}
	dir := filepath.Join(*mnt, "latency")
	check(os.MkdirAll(filepath.Join(dir, "ref"), 0o755))
	check(os.MkdirAll(filepath.Join(dir, "new"), 0o755))
	// The references first, all indexed before timing starts.
	photos := make([][]byte, *n)
	for i := range photos {
		big, small := photo(i)
		photos[i] = big
		check(os.WriteFile(filepath.Join(dir, "ref", fmt.Sprintf("ref%03d.jpg", i)), small, 0o644))
	}
	out, err := exec.Command(*bin, "sync", *mnt).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "imgfs sync: %v: %s\n", err, out)
		os.Exit(1)
	}
	var lat []time.Duration
	for i := range photos {
		name := fmt.Sprintf("new%03d.jpg", i)
		f, err := os.Create(filepath.Join(dir, "new", name))
		check(err)
		_, err = f.Write(photos[i])
		check(err)
		check(f.Close())
		t0 := time.Now()
		sim := filepath.Join(*mnt, ".similar", "latency", "new", name)
		for {
			if ents, err := os.ReadDir(sim); err == nil && len(ents) > 0 {
				break
			}
			if time.Since(t0) > *timeout {
				fmt.Fprintf(os.Stderr, "%s did not appear in .similar/ within %v\n", name, *timeout)
				os.Exit(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("close() -> .similar/ over %d photos: p50 %v, p95 %v, max %v\n", len(lat),
		lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*95/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
}

// photo draws a deterministic picture (1024x768: a gradient sky, hills, discs and boxes of
// seeded colours) and returns it as a JPEG and as a half-size JPEG at a lower quality.
func photo(seed int) (big, small []byte) {
	r := rand.New(rand.NewPCG(uint64(seed), 99))
	w, h := 1024, 768
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	c1 := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	c2 := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	hill := r.Float64()*0.5 + 0.3
	freq := r.Float64()*0.02 + 0.002
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			t := float64(y) / float64(h)
			c := color.RGBA{uint8(float64(c1.R)*(1-t) + float64(c2.R)*t), uint8(float64(c1.G)*(1-t) + float64(c2.G)*t),
				uint8(float64(c1.B)*(1-t) + float64(c2.B)*t), 255}
			if float64(y) > float64(h)*(hill+0.1*math.Sin(float64(x)*freq)) {
				c = color.RGBA{c2.G / 2, c1.R / 2, c1.B / 3, 255}
			}
			img.Set(x, y, c)
		}
	}
	for k := 0; k < 3+r.IntN(8); k++ {
		cx, cy, rad := r.IntN(w), r.IntN(h), 20+r.IntN(150)
		col := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
		box := r.IntN(2) == 0
		for y := max(0, cy-rad); y < min(h, cy+rad); y++ {
			for x := max(0, cx-rad); x < min(w, cx+rad); x++ {
				if box || (x-cx)*(x-cx)+(y-cy)*(y-cy) < rad*rad {
					img.Set(x, y, col)
				}
			}
		}
	}
	var b bytes.Buffer
	check(jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}))
	half := image.NewRGBA(image.Rect(0, 0, w/2, h/2))
	for y := 0; y < h/2; y++ {
		for x := 0; x < w/2; x++ {
			half.Set(x, y, img.At(2*x, 2*y))
		}
	}
	var s bytes.Buffer
	check(jpeg.Encode(&s, half, &jpeg.Options{Quality: 60}))
	return b.Bytes(), s.Bytes()
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
