package dedup

import (
	"bytes"
	"errors"
	"io"
	mrand "math/rand/v2"
	"testing"
)

// plainRange is the plaintext byte range stored in segment i.
func plainRange(i, size int64) (lo, hi int64) {
	lo = max(i*segSize-innerLen, 0)
	hi = min((i+1)*segSize-innerLen, size)
	return lo, hi
}

// checkNeverWrong asserts that a modified object is rejected by Open and by a full
// sequential read, and that any byte OpenReader does return is the original one. badSeg is
// the segment whose ciphertext was modified (-1: header/commit or unknown); reads touching
// it must fail.
func checkNeverWrong(t *testing.T, what string, ref Ref, obj, p []byte, badSeg int64) {
	t.Helper()
	if got, err := Open(ref, obj); err == nil {
		t.Fatalf("%s: Open accepted a modified object (equal=%v)", what, bytes.Equal(got, p))
	} else if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s: Open error does not match ErrCorrupt: %v", what, err)
	}
	if _, err := openContent(ref.Key, ref.Size, obj); err == nil && badSeg >= 0 {
		t.Fatalf("%s: decryption without the locator check accepted a modified segment", what)
	}
	ra, err := OpenReader(ref, bytes.NewReader(obj), int64(len(obj)))
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: OpenReader error does not match ErrCorrupt: %v", what, err)
		}
		return
	}
	if badSeg == 0 {
		t.Fatalf("%s: OpenReader accepted a modified segment 0", what)
	}
	n := segments(streamLen(ref.Size))
	for i := int64(0); i < n; i++ {
		lo, hi := plainRange(i, ref.Size)
		if hi <= lo {
			continue
		}
		buf := make([]byte, hi-lo)
		k, err := ra.ReadAt(buf, lo)
		if !bytes.Equal(buf[:k], p[lo:lo+int64(k)]) {
			t.Fatalf("%s: ReadAt returned wrong bytes in segment %d", what, i)
		}
		if i == badSeg && err == nil {
			t.Fatalf("%s: read of modified segment %d succeeded", what, i)
		}
	}
	// A fresh reader read in order must hit the bad segment or the locator check.
	ra, _ = OpenReader(ref, bytes.NewReader(obj), int64(len(obj)))
	all, err := io.ReadAll(io.NewSectionReader(ra, 0, ref.Size))
	if err == nil {
		t.Fatalf("%s: full sequential read succeeded", what)
	}
	if !bytes.Equal(all, p[:len(all)]) {
		t.Fatalf("%s: sequential read returned wrong bytes", what)
	}
	if _, err := OpenVerifiedReader(ref, bytes.NewReader(obj), int64(len(obj))); err == nil {
		t.Fatalf("%s: OpenVerifiedReader accepted a modified object", what)
	}
}

// segOf returns the segment containing object offset off (-1 for the header/commit).
func segOf(off int64) int64 {
	if off < contentStart {
		return -1
	}
	return (off - contentStart) / (segSize + tagSize)
}

func TestBitFlipsContent(t *testing.T) {
	p := randBytes(11, 3*segSize+1234) // 4 segments, short last one
	obj, ref := sealBytes(t, testCS(3), p)
	var pos []int64 // bit positions
	for b := int64(0); b < contentStart*8; b++ {
		pos = append(pos, b)
	}
	n := segments(streamLen(ref.Size))
	st := &stream{start: contentStart, sl: streamLen(ref.Size), n: n}
	for i := int64(0); i < n; i++ {
		off, clen := st.seg(i)
		for _, o := range []int64{off, off + clen - tagSize - 1, off + clen - tagSize, off + clen - 1} {
			pos = append(pos, o*8, o*8+7)
		}
	}
	rounds := 1000
	if testing.Short() {
		rounds = 200
	}
	r := mrand.New(mrand.NewPCG(1, 2))
	for range rounds {
		pos = append(pos, r.Int64N(int64(len(obj))*8))
	}
	for _, bit := range pos {
		bad := bytes.Clone(obj)
		bad[bit/8] ^= 1 << (bit % 8)
		checkNeverWrong(t, "bit flip", ref, bad, p, segOf(bit/8))
	}
}

func TestTruncateExtendContent(t *testing.T) {
	p := randBytes(12, 2*segSize+100)
	obj, ref := sealBytes(t, testCS(3), p)
	cuts := []int{0, 1, 47, 48, 49, len(obj) - 1}
	for i := 1; i <= 3; i++ {
		b := contentStart + i*(segSize+tagSize)
		cuts = append(cuts, b-1, b, b+1)
	}
	for _, c := range cuts {
		if c < 0 || c >= len(obj) {
			continue
		}
		bad := obj[:c]
		if _, err := Open(ref, bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncation at %d: Open: %v", c, err)
		}
		if _, err := OpenReader(ref, bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncation at %d: OpenReader: %v", c, err)
		}
		// The object lies about its size too (its own length), as a reader trusting the store would.
		if ra, err := OpenReader(ref, bytes.NewReader(bad), int64(len(obj))); err == nil {
			if _, err := io.ReadAll(io.NewSectionReader(ra, 0, ref.Size)); err == nil {
				t.Fatalf("truncation at %d: read with the old size succeeded", c)
			}
		}
	}
	for _, ext := range [][]byte{{0}, make([]byte, 16), randBytes(5, 16), randBytes(6, segSize+tagSize)} {
		bad := append(bytes.Clone(obj), ext...)
		if _, err := Open(ref, bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("extension by %d: Open: %v", len(ext), err)
		}
		if _, err := OpenReader(ref, bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("extension by %d: OpenReader: %v", len(ext), err)
		}
	}
}

// TestDropLastSegment: the attacker removes the final segment and fixes up everything it
// can (locator = hash of the shorter object, a size that matches its length). The final
// flag (nonce) and the inner length must still reject it (T14c).
func TestDropLastSegment(t *testing.T) {
	p := randBytes(13, 3*segSize-16) // stream exactly 3 full segments
	obj, ref := sealBytes(t, testCS(3), p)
	if segments(streamLen(ref.Size)) != 3 || streamLen(ref.Size) != 3*segSize {
		t.Fatalf("setup: stream %d", streamLen(ref.Size))
	}
	short := obj[:contentStart+2*(segSize+tagSize)]
	fake := ref
	fake.Size = 2*segSize - 16 // ObjectSize(fake.Size) == len(short)
	if ObjectSize(fake.Size) != int64(len(short)) {
		t.Fatalf("setup: ObjectSize %d != %d", ObjectSize(fake.Size), len(short))
	}
	fake.Locator = Hash(short)
	if _, err := Open(fake, short); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("dropped last segment accepted: %v", err)
	}
	ra, err := OpenReader(fake, bytes.NewReader(short), int64(len(short)))
	if err == nil {
		buf := make([]byte, fake.Size)
		if _, err := ra.ReadAt(buf, 0); err == nil {
			t.Fatal("dropped last segment readable")
		}
	}
}

func TestSegmentSwap(t *testing.T) {
	p := randBytes(14, 4*segSize)
	obj, ref := sealBytes(t, testCS(3), p)
	st := &stream{start: contentStart, sl: streamLen(ref.Size), n: segments(streamLen(ref.Size))}
	for _, pair := range [][2]int64{{0, 1}, {1, 2}, {0, 2}} {
		a, alen := st.seg(pair[0])
		b, blen := st.seg(pair[1])
		if alen != blen {
			t.Fatal("setup: unequal segments")
		}
		bad := bytes.Clone(obj)
		copy(bad[a:a+alen], obj[b:b+blen])
		copy(bad[b:b+blen], obj[a:a+alen])
		checkNeverWrong(t, "segment swap", ref, bad, p, pair[0])
	}
	// Duplicate a segment over another.
	a, alen := st.seg(1)
	b, _ := st.seg(2)
	bad := bytes.Clone(obj)
	copy(bad[b:b+alen], obj[a:a+alen])
	checkNeverWrong(t, "segment duplicate", ref, bad, p, 2)
}

func TestOtherObjectUnderLocator(t *testing.T) {
	pa := randBytes(15, 100_000)
	pb := randBytes(16, 100_000) // same size class
	_, ra := sealBytes(t, testCS(3), pa)
	objB, _ := sealBytes(t, testCS(3), pb)
	checkNeverWrong(t, "object of B under A's locator", ra, objB, pa, -1)
	// Same plaintext under another CS: also another key, rejected.
	objC, _ := sealBytes(t, testCS(4), pa)
	checkNeverWrong(t, "object under another CS", ra, objC, pa, -1)
}

// TestValidForgery is T17: an attacker who knows K_c(X) builds a correctly committed,
// correctly encrypted object for Y. Only the locator check may reject it.
func TestValidForgery(t *testing.T) {
	x := randBytes(17, 3*segSize)
	y := bytes.Clone(x)
	// The change lies in the last segment only (earlier segments of a forgery are valid
	// GCM segments under K_c and OpenReader may release them; OpenVerifiedReader may not).
	copy(y[len(y)-15:], "not the photo!!")
	_, refX := sealBytes(t, testCS(3), x)
	var forged bytes.Buffer
	if _, _, err := sealWithKey(refX.Key, bytes.NewReader(y), int64(len(y)), &forged, make([]byte, segSize+tagSize)); err != nil {
		t.Fatal(err)
	}
	f := forged.Bytes()
	// The forgery passes everything except the locator: prove it, so this test cannot pass
	// for the wrong reason.
	if got, err := openContent(refX.Key, refX.Size, f); err != nil || !bytes.Equal(got, y) {
		t.Fatalf("setup: forgery does not decrypt to Y without the locator check: %v", err)
	}
	if _, err := Open(refX, f); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open accepted a valid forgery: %v", err)
	}
	if _, err := OpenVerifiedReader(refX, bytes.NewReader(f), int64(len(f))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenVerifiedReader accepted a valid forgery: %v", err)
	}
	ra, err := OpenReader(refX, bytes.NewReader(f), int64(len(f)))
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(io.NewSectionReader(ra, 0, refX.Size))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("full read of a valid forgery: %v", err)
	}
	if !bytes.Equal(all, y[:len(all)]) || bytes.Contains(all, []byte("not the photo")) {
		t.Fatal("forged bytes released before the locator check")
	}
}

func TestBitFlipsMetaAndRoot(t *testing.T) {
	mk := testCS(9)
	p := randBytes(20, segSize+500)
	obj, loc, err := SealMeta(mk, "tree", p)
	if err != nil {
		t.Fatal(err)
	}
	robj, _, err := SealRoot(mk, 7, p[:300])
	if err != nil {
		t.Fatal(err)
	}
	r := mrand.New(mrand.NewPCG(3, 4))
	flips := func(n int) []int {
		var out []int
		for b := 0; b < metaStart*8; b++ {
			out = append(out, b)
		}
		for range 300 {
			out = append(out, r.IntN(n*8))
		}
		return append(out, n*8-1, (n-tagSize)*8)
	}
	for _, bit := range flips(len(obj)) {
		bad := bytes.Clone(obj)
		bad[bit/8] ^= 1 << (bit % 8)
		if _, err := OpenMeta(mk, "tree", loc, bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("meta flip %d: %v", bit, err)
		}
		// An attacker can also fix up the locator: then the AEAD layer must catch it.
		if _, err := OpenMeta(mk, "tree", Hash(bad), bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("meta flip %d with fixed-up locator: %v", bit, err)
		}
	}
	for _, bit := range flips(len(robj)) {
		bad := bytes.Clone(robj)
		bad[bit/8] ^= 1 << (bit % 8)
		if _, err := OpenRoot(mk, 7, bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("root flip %d: %v", bit, err)
		}
	}
	for _, c := range []int{0, 1, 47, 48, 79, 80, 81, len(robj) - 1} {
		if _, err := OpenRoot(mk, 7, robj[:c]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("root truncated at %d: %v", c, err)
		}
	}
	if _, err := OpenRoot(mk, 7, append(bytes.Clone(robj), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatal("root extended by one byte accepted")
	}
	// Two metadata objects swapped: each fails under the other's locator.
	obj2, loc2, _ := SealMeta(mk, "tree", p)
	if _, err := OpenMeta(mk, "tree", loc, obj2); !errors.Is(err, ErrCorrupt) {
		t.Fatal("swapped metadata object accepted")
	}
	if _, err := OpenMeta(mk, "tree", loc2, obj); !errors.Is(err, ErrCorrupt) {
		t.Fatal("swapped metadata object accepted")
	}
}

// TestTailPaddingSegmentsVerified: for sizes whose Padmé padding fills whole segments
// (here 4 MiB + 1 byte of stream: 2 segments of padding only), a full in-order read still
// authenticates those segments and checks the locator before releasing the last bytes.
func TestTailPaddingSegmentsVerified(t *testing.T) {
	size := int64(4<<20 + 1 - innerLen)
	last := (innerLen + size - 1) / segSize // last segment holding payload
	if n := segments(streamLen(size)); n-last != 2 {
		t.Fatalf("setup: %d segments, last payload segment %d", n, last)
	}
	p := randBytes(21, int(size))
	obj, ref := sealBytes(t, testCS(5), p)
	for _, at := range []int64{int64(len(obj)) - 1, int64(len(obj)) - segSize - 3*tagSize} {
		bad := bytes.Clone(obj)
		bad[at] ^= 1
		ra, err := OpenReader(ref, bytes.NewReader(bad), int64(len(bad)))
		if err != nil {
			t.Fatal(err)
		}
		all, err := io.ReadAll(io.NewSectionReader(ra, 0, ref.Size))
		if err == nil {
			t.Fatalf("flip at %d in a padding segment: full read succeeded", at)
		}
		if !bytes.Equal(all, p[:len(all)]) || int64(len(all)) > last*segSize-innerLen {
			t.Fatalf("flip at %d: %d bytes released, or wrong bytes", at, len(all))
		}
	}
	ra, err := OpenReader(ref, bytes.NewReader(obj), int64(len(obj)))
	if err != nil {
		t.Fatal(err)
	}
	if all, err := io.ReadAll(io.NewSectionReader(ra, 0, ref.Size)); err != nil || !bytes.Equal(all, p) {
		t.Fatalf("intact object: %v", err)
	}
}

// TestTruncateExtendMeta is T13 for metadata objects, with the locator fixed up by the
// attacker (so the AEAD layer, not the hash, must reject): cuts at 0, 1, 47, 48, 79, 80,
// every segment boundary +-1 and len-1; extensions by 1, 16 and one whole segment; the
// last segment dropped.
func TestTruncateExtendMeta(t *testing.T) {
	mk := testCS(9)
	p := randBytes(22, 2*segSize+700)
	obj, _, err := SealMeta(mk, "tree", p)
	if err != nil {
		t.Fatal(err)
	}
	var cuts []int
	cuts = append(cuts, 0, 1, 47, 48, 79, 80, len(obj)-1)
	for b := metaStart; b < len(obj); b += segSize + tagSize {
		cuts = append(cuts, b-1, b, b+1)
	}
	var bad [][]byte
	for _, c := range cuts {
		bad = append(bad, obj[:c])
	}
	bad = append(bad, append(bytes.Clone(obj), 0), append(bytes.Clone(obj), make([]byte, 16)...),
		append(bytes.Clone(obj), obj[metaStart:metaStart+segSize+tagSize]...))
	lastSeg := metaStart + 2*(segSize+tagSize)
	bad = append(bad, obj[:lastSeg]) // drop the final segment
	for i, b := range bad {
		if _, err := OpenMeta(mk, "tree", Hash(b), b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("case %d (len %d of %d): %v", i, len(b), len(obj), err)
		}
	}
}
