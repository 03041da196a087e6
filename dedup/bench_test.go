package dedup

// Throughput of the full seal and open paths for a 4 MB photo next to the raw primitives
// they are built from, on the same machine:
//
//	go test -run=^$ -bench=. -cpu=1 ./dedup/
//
// Seal = HMAC-SHA256 pass over P (content key) + AES-256-GCM segments + SHA-256 of the
// object (locator); Open = SHA-256 of the object + GCM open of every segment.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"io"
	"syscall"
	"testing"
)

// cpuMeter reports throughput per second of process CPU time (user + system) next to the
// wall-clock MB/s: on a shared, loaded machine the wall clock counts time spent waiting
// for a core, CPU time does not. Start it right before the b.Loop loop; with -cpu=1 the
// process CPU is the benchmark's (plus GC).
type cpuMeter struct {
	b     *testing.B
	bytes int64
	start float64
	n     int
}

func cpuNow() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func startCPU(b *testing.B, bytes int64) *cpuMeter {
	return &cpuMeter{b: b, bytes: bytes, start: cpuNow()}
}

// loop wraps b.Loop and reports the metric when the loop ends.
func (m *cpuMeter) loop() bool {
	if m.b.Loop() {
		m.n++
		return true
	}
	if d := cpuNow() - m.start; d > 0 && m.n > 0 {
		m.b.ReportMetric(float64(m.bytes)*float64(m.n)/d/1e6, "MB/cpu-s")
	}
	return false
}

const photoSize = 4_000_000

// BenchmarkSeal4MB: the full seal path (both passes, locator) into a reused buffer.
func BenchmarkSeal4MB(b *testing.B) {
	p := randBytes(1, photoSize)
	cs := testCS(1)
	var out bytes.Buffer
	out.Grow(int(ObjectSize(photoSize)))
	b.SetBytes(photoSize)
	for m := startCPU(b, photoSize); m.loop(); {
		out.Reset()
		if _, err := Seal(cs, bytes.NewReader(p), photoSize, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen4MB: verify the locator, the commitment and every segment, and decrypt.
func BenchmarkOpen4MB(b *testing.B) {
	p := randBytes(1, photoSize)
	var buf bytes.Buffer
	ref, err := Seal(testCS(1), bytes.NewReader(p), photoSize, &buf)
	if err != nil {
		b.Fatal(err)
	}
	obj := buf.Bytes()
	b.SetBytes(photoSize)
	for m := startCPU(b, photoSize); m.loop(); {
		if _, err := Open(ref, obj); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenReader4MB: the streaming reader (what the file system uses), read in order
// in 128 KiB reads.
func BenchmarkOpenReader4MB(b *testing.B) {
	p := randBytes(1, photoSize)
	var buf bytes.Buffer
	ref, err := Seal(testCS(1), bytes.NewReader(p), photoSize, &buf)
	if err != nil {
		b.Fatal(err)
	}
	obj := bytes.NewReader(buf.Bytes())
	dst := make([]byte, 128<<10)
	b.SetBytes(photoSize)
	for m := startCPU(b, photoSize); m.loop(); {
		ra, err := OpenReader(ref, obj, int64(buf.Len()))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, io.NewSectionReader(ra, 0, photoSize), dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawAESGCM4MB: AES-256-GCM Seal of 4 MB in 64 KiB messages, one key.
func BenchmarkRawAESGCM4MB(b *testing.B) {
	p := randBytes(1, photoSize)
	blk, _ := aes.NewCipher(testCS(1))
	g, _ := cipher.NewGCM(blk)
	nonce := make([]byte, 12)
	out := make([]byte, 0, segSize+tagSize)
	b.SetBytes(photoSize)
	for m := startCPU(b, photoSize); m.loop(); {
		for off := 0; off < len(p); off += segSize {
			out = g.Seal(out[:0], nonce, p[off:min(len(p), off+segSize)], nil)
		}
	}
}

// BenchmarkSHA256_4MB: SHA-256 of 4 MB.
func BenchmarkSHA256_4MB(b *testing.B) {
	p := randBytes(1, photoSize)
	b.SetBytes(photoSize)
	for m := startCPU(b, photoSize); m.loop(); {
		sha256.Sum256(p)
	}
}
