package dedup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func testChunker(t testing.TB, cs []byte) *Chunker {
	t.Helper()
	c, err := NewChunker(cs)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chunkerKATPlain is the documented chunker test input: SHA-256("imgfs chunker kat" ||
// u32be(j)) for j = 0, 1, ... concatenated (no period, unlike katPlain).
func chunkerKATPlain(n int) []byte {
	b := make([]byte, 0, n+32)
	for j := uint32(0); len(b) < n; j++ {
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], j)
		h := sha256.Sum256(append([]byte("imgfs chunker kat"), c[:]...))
		b = append(b, h[:]...)
	}
	return b[:n]
}

// checkLengths: every chunk but the last is in (ChunkMin, ChunkMax], the last in (0,
// ChunkMax], and they add up to the input.
func checkLengths(t testing.TB, ls []int, total int) {
	t.Helper()
	sum := 0
	for i, n := range ls {
		if n <= 0 || n > ChunkMax || (i < len(ls)-1 && n <= ChunkMin) {
			t.Fatalf("chunk %d of %d has length %d", i, len(ls), n)
		}
		sum += n
	}
	if sum != total {
		t.Fatalf("chunks add up to %d, want %d", sum, total)
	}
}

func TestChunkerProperties(t *testing.T) {
	c := testChunker(t, katCS())
	data := randBytes(1, 64<<20)
	ls := c.Split(data)
	checkLengths(t, ls, len(data))
	// Mean length for random content: about 3.2 MiB (docs/format.md §11).
	mean := len(data) / len(ls)
	if mean < 5<<19 || mean > 4<<20 {
		t.Errorf("mean chunk %d bytes over %d chunks; want about 3.2 MiB", mean, len(ls))
	}
	// Streaming: Cut fed growing prefixes finds the same cuts.
	off := 0
	for i, want := range ls {
		step, have, scanned := 300_000, 0, 0
		var n int
		for {
			have = min(have+step, len(data)-off)
			var ok bool
			if i%2 == 0 {
				n, ok = c.Cut(data[off:off+have], off+have == len(data))
			} else {
				n, ok = c.CutFrom(data[off:off+have], scanned, off+have == len(data))
			}
			if ok {
				break
			}
			scanned = have
		}
		if n != want {
			t.Fatalf("chunk %d: streaming cut %d, whole-buffer cut %d", i, n, want)
		}
		off += n
	}
	// Another key cuts elsewhere.
	other := testChunker(t, bytes.Repeat([]byte{0x5a}, 32))
	if ls2 := other.Split(data); len(ls2) > 1 && ls2[0] == ls[0] && ls2[1] == ls[1] {
		t.Errorf("two keys gave the same first cuts %v", ls2[:2])
	}
	// Constant content has no cut: every chunk is ChunkMax (no fingerprint of the key).
	zs := c.Split(make([]byte, 3*ChunkMax+5))
	if len(zs) != 4 || zs[0] != ChunkMax || zs[3] != 5 {
		t.Errorf("zeros split as %v", zs)
	}
	// Small files are one chunk.
	for _, n := range []int{0, 1, ChunkMin} {
		if ls := c.Split(make([]byte, n)); (n == 0 && len(ls) != 0) || (n > 0 && (len(ls) != 1 || ls[0] != n)) {
			t.Errorf("%d bytes split as %v", n, ls)
		}
	}
}

// TestChunkerResync: an edit in place changes at most the chunks around it; an insertion
// shifts the data, and the cuts after it are found again at the same content.
func TestChunkerResync(t *testing.T) {
	c := testChunker(t, katCS())
	data := randBytes(2, 40<<20)
	cuts := func(ls []int) map[int]bool {
		m, off := map[int]bool{}, 0
		for _, n := range ls {
			off += n
			m[off] = true
		}
		return m
	}
	before := c.Split(data)
	// In-place edit of 4 KiB at 20 MiB: all cuts outside the edited chunk and the next stay.
	edited := bytes.Clone(data)
	copy(edited[20<<20:], randBytes(3, 4096))
	after := cuts(c.Split(edited))
	lost := 0
	for off := range cuts(before) {
		if !after[off] {
			lost++
		}
	}
	if lost > 2 {
		t.Errorf("in-place edit moved %d cuts", lost)
	}
	// Insert 1000 bytes at 5 MiB: cuts more than a chunk after it reappear, shifted.
	ins := append(append(bytes.Clone(data[:5<<20]), randBytes(4, 1000)...), data[5<<20:]...)
	shifted := cuts(c.Split(ins))
	kept, far := 0, 0
	for off := range cuts(before) {
		if off > 5<<20+ChunkMax && off < len(data) {
			far++
			if shifted[off+1000] {
				kept++
			}
		}
	}
	if far == 0 || kept != far {
		t.Errorf("after an insertion %d of %d later cuts were found again", kept, far)
	}
}

type chunkerKAT struct {
	CS     string `json:"cs"`
	Size   int    `json:"size"`
	Chunks []int  `json:"chunks"`
}

func chunkerKATCompute(t *testing.T) []chunkerKAT {
	var out []chunkerKAT
	for _, cs := range [][]byte{katCS(), bytes.Repeat([]byte{0x5a}, 32)} {
		for _, n := range []int{ChunkMin + 1, 6 << 20} {
			out = append(out, chunkerKAT{CS: hex.EncodeToString(cs), Size: n, Chunks: testChunker(t, cs).Split(chunkerKATPlain(n))})
		}
	}
	return out
}

// TestChunkerKnownAnswers: fixed key + fixed input => fixed cuts (testdata/chunker_kat.json;
// regenerate only for a deliberate format change with -update), confirmed by
// testdata/chunker_check.py, an independent Python implementation.
func TestChunkerKnownAnswers(t *testing.T) {
	got := chunkerKATCompute(t)
	path := filepath.Join("testdata", "chunker_kat.json")
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []chunkerKAT
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("chunker vectors changed:\n got %s\nwant %s", gb, wb)
	}
	multi := false
	for _, v := range want {
		multi = multi || len(v.Chunks) > 1
	}
	if !multi {
		t.Fatal("no vector has more than one chunk")
	}
	py := "/usr/bin/python3"
	if exec.Command(py, "-c", "import cryptography").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 with the cryptography package is required under CI")
		}
		t.Skip("python3 with the cryptography package not available")
	}
	out, err := exec.Command(py, filepath.Join("testdata", "chunker_check.py")).CombinedOutput()
	if err != nil || bytes.Count(out, []byte("ok ")) != len(want) {
		t.Fatalf("chunker_check.py: %v\n%s", err, out)
	}
}

// FuzzChunker: for any input (stretched to a few MiB so cuts happen), Split's lengths
// obey the bounds and streaming Cut agrees with it.
func FuzzChunker(f *testing.F) {
	f.Add([]byte("seed"), uint16(0))
	f.Add([]byte{0}, uint16(65535))
	c := testChunker(f, katCS())
	f.Fuzz(func(t *testing.T, seed []byte, extra uint16) {
		if len(seed) == 0 {
			return
		}
		n := ChunkMin + int(extra)*8
		data := make([]byte, n)
		for i := 0; i < n; i += len(seed) {
			copy(data[i:], seed)
		}
		for i := 0; i < n; i += 8 { // vary the tiles so windows differ
			data[i] ^= byte(uint32(i) * 2654435761 >> 24)
		}
		ls := c.Split(data)
		checkLengths(t, ls, n)
		if m, ok := c.Cut(data, false); ok && m != ls[0] {
			t.Fatalf("Cut %d, Split %d", m, ls[0])
		}
	})
}

// BenchmarkChunker reports MB/s and MB per CPU-second (the machine may be shared).
func BenchmarkChunker(b *testing.B) {
	c := testChunker(b, katCS())
	data := randBytes(5, 64<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	c0 := cpuTime()
	for range b.N {
		c.Split(data)
	}
	b.ReportMetric(float64(len(data))*float64(b.N)/1e6/(cpuTime()-c0).Seconds(), "MB/cpu-s")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
