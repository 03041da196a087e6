package embed

import (
	"bytes"
	"image"
	"image/jpeg"
	"math"
	"math/rand"
	"sync"
	"testing"
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

func BenchmarkDecode12MP(b *testing.B) {
	data := jpeg12MP(b)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := DecodeImage(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResize12MP(b *testing.B) {
	img, err := DecodeImage(bytes.NewReader(jpeg12MP(b)))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := toInput(img, 224, 224); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEmbedFile12MP is the end-to-end cost per photo: decode + resize + forward pass,
// with GOMAXPROCS workers embedding different photos in parallel (-cpu 2: two cores).
func BenchmarkEmbedFile12MP(b *testing.B) {
	m := testModel(b)
	data := jpeg12MP(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := EmbedFile(m, bytes.NewReader(data)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "photos/s")
}

// BenchmarkEmbed224 is the default recipe's forward pass plus pooling on a 224x224 image.
func BenchmarkEmbed224(b *testing.B) {
	m := testModel(b)
	img := image.NewRGBA(image.Rect(0, 0, 224, 224))
	r := rand.New(rand.NewSource(3))
	r.Read(img.Pix)
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Embed(img); err != nil {
			b.Fatal(err)
		}
	}
}
