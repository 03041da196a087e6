package embed

import (
	"bytes"
	"image"
	"image/jpeg"
	"math"
	"math/rand"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imgfs/imgfs/embed/imgdecode"
	"github.com/imgfs/imgfs/embed/phash"
)

func BenchmarkForward(b *testing.B) {
	m := testModel(b)
	in := m.Input()
	x := make([]float32, in.Height*in.Width*in.Channels)
	r := rand.New(rand.NewSource(1))
	for i := range x {
		x[i] = r.Float32()
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Forward(x, "out_relu"); err != nil {
			b.Fatal(err)
		}
	}
}

// photoJPEG returns a deterministic w x h JPEG with photo-like content (smooth gradients,
// shapes and sensor-like noise), so that encoder and decoder work as on a camera image.
func photoJPEG(tb testing.TB, w, h int) []byte {
	tb.Helper()
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	r := rand.New(rand.NewSource(42))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			fx, fy := float64(x)/float64(w), float64(y)/float64(h)
			v := 128 + 80*math.Sin(fx*9+fy*3) + 30*math.Cos(fx*fy*40) + r.NormFloat64()*6
			if (x/(w/8)+y/(h/6))%3 == 0 {
				v = 255 - v
			}
			img.Y[y*img.YStride+x] = uint8(max(0, min(255, v)))
		}
	}
	for y := 0; y < (h+1)/2; y++ {
		for x := 0; x < (w+1)/2; x++ {
			img.Cb[y*img.CStride+x] = uint8(128 + 60*math.Sin(float64(x)/200))
			img.Cr[y*img.CStride+x] = uint8(128 + 60*math.Cos(float64(y)/150))
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

var (
	jpeg12Once sync.Once
	jpeg12     []byte
)

// 4000x3000 = 12 MP, a typical phone/camera photo.
func jpeg12MP(tb testing.TB) []byte {
	jpeg12Once.Do(func() { jpeg12 = photoJPEG(tb, 4000, 3000) })
	return jpeg12
}

// cpuTime is the process's user+system CPU time: with other processes competing for the
// cores, CPU time per operation is steadier than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// BenchmarkDecode12MP compares decoding a 12 MP JPEG: image/jpeg (full size, no DCT
// scaling), libjpeg-turbo at full size, and libjpeg-turbo at the scale Decode picks (2/8).
func BenchmarkDecode12MP(b *testing.B) {
	data := jpeg12MP(b)
	run := func(name string, f func() (image.Image, error)) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			c0 := cpuTime()
			for b.Loop() {
				img, err := f()
				if err != nil {
					b.Fatal(err)
				}
				_ = img
			}
			reportCPU(b, c0)
		})
	}
	run("image-jpeg-full", func() (image.Image, error) { return jpeg.Decode(bytes.NewReader(data)) })
	run("imgdecode-full", func() (image.Image, error) {
		img, _, err := imgdecode.DecodeBytes(data, MaxPixels)
		return img, err
	})
	run("imgdecode-scaled", func() (image.Image, error) { return DecodeImage(bytes.NewReader(data)) })
}

// BenchmarkHashes12MP is pHash + dHash of a 12 MP JPEG as Decode returns it.
func BenchmarkHashes12MP(b *testing.B) {
	img, err := DecodeImage(bytes.NewReader(jpeg12MP(b)))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		phash.Hashes(img)
	}
}

// BenchmarkResize12MP is the preprocessing (box pre-shrink + bilinear) of a 12 MP image
// decoded at full size, as without DCT scaling.
func BenchmarkResize12MP(b *testing.B) {
	img, _, err := imgdecode.DecodeBytes(jpeg12MP(b), MaxPixels)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := toInput(img, 224, 224, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEmbedFile12MP is the end-to-end cost per photo: decode + resize + forward pass,
// with GOMAXPROCS workers embedding different photos in parallel (-cpu 2: two cores).
func BenchmarkEmbedFile12MP(b *testing.B) {
	m := testModel(b)
	data := jpeg12MP(b)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heap0 := ms.HeapAlloc
	b.ResetTimer()
	c0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := EmbedFile(m, bytes.NewReader(data)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "photos/s")
	reportCPU(b, c0)
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapSys-min(ms.HeapSys, heap0))/(1<<20), "heapsys-MiB")
	b.ReportMetric(float64(m.ArenaBytes())/(1<<20), "arena-MiB/worker")
}

// BenchmarkEmbed224 is the default recipe's forward pass plus pooling on a 224x224 image.
func BenchmarkEmbed224(b *testing.B) {
	m := testModel(b)
	img := image.NewRGBA(image.Rect(0, 0, 224, 224))
	r := rand.New(rand.NewSource(3))
	r.Read(img.Pix)
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		if _, err := m.Embed(img); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, c0)
}
