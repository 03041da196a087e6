package dedup

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"runtime"
	"sync"
	"testing"
)

// zeroReader is a ReaderAt of n zero bytes that allocates nothing.
type zeroReader struct{ n int64 }

func (z zeroReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= z.n {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n-off)
	clear(p[:k])
	if k < int64(len(p)) {
		return int(k), io.EOF
	}
	return int(k), nil
}

func sealAllocs(t *testing.T, size int64) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := Seal(testCS(1), zeroReader{size}, size, io.Discard); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestSealMemoryBounded: sealing allocates the same small amount whatever the size.
func TestSealMemoryBounded(t *testing.T) {
	small := sealAllocs(t, 1<<20)
	big := int64(64 << 20)
	if !testing.Short() {
		big = 2 << 30 // 2 GiB, about 3 s on one core
	}
	got := sealAllocs(t, big)
	t.Logf("allocated %d bytes for 1 MiB, %d bytes for %d MiB", small, got, big>>20)
	if got > 512<<10 || got > 2*small+64<<10 {
		t.Fatalf("sealing %d bytes allocated %d bytes; want bounded (~%d)", big, got, small)
	}
}

func TestRoundTrip100MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB round trip skipped in -short")
	}
	p := randBytes(100, 100<<20)
	obj, ref := sealBytes(t, testCS(1), p)
	got, err := Open(ref, obj)
	if err != nil || !bytes.Equal(got, p) {
		t.Fatalf("Open: %v", err)
	}
	ra, err := OpenReader(ref, bytes.NewReader(obj), int64(len(obj)))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < ref.Size; off += 37 << 20 {
		n, err := ra.ReadAt(buf, off)
		if !bytes.Equal(buf[:n], p[off:off+int64(n)]) || (n < len(buf) && err != io.EOF) {
			t.Fatalf("ReadAt %d: %v", off, err)
		}
	}
}

// testImages encodes a few synthetic photos (gradients, noise, shapes) as PNG and JPEG.
func testImages(t *testing.T) map[string][]byte {
	out := map[string][]byte{}
	for k, sz := range []int{64, 333, 640} {
		img := image.NewRGBA(image.Rect(0, 0, sz, sz*3/4))
		noise := randBytes(uint64(k), sz*sz)
		for y := 0; y < sz*3/4; y++ {
			for x := 0; x < sz; x++ {
				r := uint8(255 * x / sz)
				g := uint8(128 + 127*math.Sin(float64(x*y)/float64(sz*7)))
				b := noise[y*sz+x] / 4
				if (x-sz/2)*(x-sz/2)+(y-sz/3)*(y-sz/3) < sz*sz/25 {
					r, g = 250, 30
				}
				img.Set(x, y, color.RGBA{r, g, b, 255})
			}
		}
		var pb, jb bytes.Buffer
		if err := png.Encode(&pb, img); err != nil {
			t.Fatal(err)
		}
		if err := jpeg.Encode(&jb, img, &jpeg.Options{Quality: 85}); err != nil {
			t.Fatal(err)
		}
		out[string(rune('a'+k))+".png"] = pb.Bytes()
		out[string(rune('a'+k))+".jpg"] = jb.Bytes()
	}
	return out
}

func TestRoundTripImages(t *testing.T) {
	for name, p := range testImages(t) {
		obj, ref := sealBytes(t, testCS(2), p)
		obj2, _ := sealBytes(t, testCS(2), p)
		if !bytes.Equal(obj, obj2) {
			t.Fatalf("%s: same image sealed twice differs", name)
		}
		got, err := Open(ref, obj)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("%s: %v", name, err)
		}
		if _, _, err := image.Decode(bytes.NewReader(got)); err != nil {
			t.Fatalf("%s: decrypted image does not decode: %v", name, err)
		}
		if bytes.Contains(obj, p[:min(len(p), 64)]) {
			t.Fatalf("%s: plaintext prefix in object", name)
		}
	}
}

// TestCiphertextLooksRandom is T5: gzip cannot compress object bodies (ratio >= 0.999) and
// the byte histogram passes a chi-square test (p > 1e-6), for compressible plaintexts.
func TestCiphertextLooksRandom(t *testing.T) {
	inputs := map[string][]byte{"zeros": make([]byte, 1<<20), "text": bytes.Repeat([]byte("photo of a cat "), 50_000)}
	for name, p := range testImages(t) {
		inputs[name] = p
	}
	var hist [256]float64
	var total float64
	for name, p := range inputs {
		obj, _ := sealBytes(t, testCS(3), p)
		body := obj[contentStart:]
		var z bytes.Buffer
		w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		w.Write(body)
		w.Close()
		if ratio := float64(z.Len()) / float64(len(body)); len(body) > 4096 && ratio < 0.999 {
			t.Errorf("%s: gzip ratio %.4f < 0.999", name, ratio)
		}
		for _, c := range body {
			hist[c]++
		}
		total += float64(len(body))
	}
	exp := total / 256
	chi := 0.0
	for _, h := range hist {
		chi += (h - exp) * (h - exp) / exp
	}
	// 255 degrees of freedom: p = 1e-6 at chi-square ~ 364.
	if chi > 364 {
		t.Fatalf("byte histogram chi-square %.1f over %.0f bytes (p < 1e-6)", chi, total)
	}
	t.Logf("chi-square %.1f over %.0f bytes", chi, total)
}

// TestReaderConcurrentReadAt: many goroutines reading one Reader at random offsets get the
// right bytes (the stream's nonce scratch is only touched under the Reader's mutex; run
// with -race).
func TestReaderConcurrentReadAt(t *testing.T) {
	p := randBytes(7, 5*segSize+123)
	obj, ref := sealBytes(t, testCS(4), p)
	ra, err := OpenReader(ref, bytes.NewReader(obj), int64(len(obj)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 3000)
			for k := range 200 {
				off := int64((g*7919 + k*104729) % (len(p) - len(buf)))
				n, err := ra.ReadAt(buf, off)
				if err != nil || n != len(buf) || !bytes.Equal(buf, p[off:off+int64(n)]) {
					errs <- fmt.Errorf("ReadAt(%d): n=%d err=%v or wrong bytes", off, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
