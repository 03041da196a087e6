package dedup

import (
	"bytes"
	"testing"
)

func TestPadmeExamples(t *testing.T) {
	// Worked examples of the formula in docs/format.md §8.
	for in, want := range map[int64]int64{100_000: 100_352, 3_000_000: 3_014_656, 4_194_305: 4_325_376, 1 << 20: 1 << 20, 2: 2, 16: 16, 17: 18} {
		if got := Padme(in); got != want {
			t.Errorf("Padme(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestPadmeProperties(t *testing.T) {
	prev := int64(0)
	for l := int64(2); l < 1<<21; l += 1 + l/97 {
		p := Padme(l)
		if p < l || p < prev {
			t.Fatalf("Padme(%d) = %d not monotone / not >= l", l, p)
		}
		if Padme(p) != p {
			t.Fatalf("Padme(%d) = %d is not a fixed point", l, p)
		}
		if l >= 256 && float64(p-l)/float64(l) > 0.0625 {
			t.Fatalf("Padme(%d) overhead %.3f", l, float64(p-l)/float64(l))
		}
		if l >= 1<<16 && float64(p-l)/float64(l) > 0.03125 {
			t.Fatalf("Padme(%d) overhead %.3f", l, float64(p-l)/float64(l))
		}
		prev = p
	}
	for _, l := range []int64{-1, MaxPlainSize + 1} {
		if ObjectSize(l) != -1 {
			t.Errorf("ObjectSize(%d) accepted", l)
		}
	}
}

// TestPadmeClasses is T3: plaintexts whose sizes share a Padmé class produce objects of
// identical size, and the object size is exactly ObjectSize.
func TestPadmeClasses(t *testing.T) {
	cs := testCS(5)
	base := 300_000
	sizes := map[int64]bool{}
	for k := 0; k < 60; k++ {
		n := base + k*101
		obj, _ := sealBytes(t, cs, randBytes(uint64(k), n))
		if int64(len(obj)) != ObjectSize(int64(n)) {
			t.Fatalf("size %d: object %d, ObjectSize %d", n, len(obj), ObjectSize(int64(n)))
		}
		sizes[int64(len(obj))] = true
	}
	// 60 sizes spread over 6 KB with 8 KiB Padmé steps at 300 KB: at most 2 classes.
	if len(sizes) > 2 {
		t.Fatalf("%d object sizes for 60 plaintext sizes", len(sizes))
	}
	a, _ := sealBytes(t, cs, bytes.Repeat([]byte{1}, 300_001))
	b, _ := sealBytes(t, cs, bytes.Repeat([]byte{1}, 300_002))
	if len(a) != len(b) {
		t.Fatal("n and n+1 in one class gave different object sizes")
	}
}
