package leakscan

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
)

func randBytes(seed uint64, n int) []byte {
	r := mrand.New(mrand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testImage(t *testing.T, seed uint64, w, h int, asPNG bool) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	noise := randBytes(seed, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), noise[y*w+x] / 8, 255})
		}
	}
	var b bytes.Buffer
	var err error
	if asPNG {
		err = png.Encode(&b, img)
	} else {
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func windowHits(hits []Hit) []Hit {
	var out []Hit
	for _, h := range hits {
		if h.Kind == Window {
			out = append(out, h)
		}
	}
	return out
}

// TestPlantedCopyFound is the positive control: a run of plaintext planted in a stored
// file is found once, at the right offset, with the right length and source.
func TestPlantedCopyFound(t *testing.T) {
	p := testImage(t, 1, 300, 200, true)
	s := New()
	s.AddPlaintext("cat.png", p)
	dir := t.TempDir()
	junk := randBytes(2, 100_000)
	leak := append(append(append([]byte{}, junk[:7777]...), p[1000:5000]...), junk[7777:]...)
	writeFile(t, filepath.Join(dir, "c", "ab", "obj1"), leak)
	writeFile(t, filepath.Join(dir, "c", "cd", "obj2"), junk)
	hits, err := s.ScanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 {
		t.Fatalf("want 1 hit, got %s", Format(hits))
	}
	h := hits[0]
	if h.Kind != Window || h.Offset != 7777 || h.Length != 4000 || h.Source != "cat.png@1000" ||
		!strings.HasSuffix(h.Where, filepath.Join("c", "ab", "obj1")) {
		t.Fatalf("wrong hit: %s", h)
	}
}

// TestWindowLimits: 16 bytes are found, 15 are not; with stride 8, 23 bytes at any shift are found.
func TestWindowLimits(t *testing.T) {
	p := randBytes(3, 50_000)
	junk := randBytes(4, 4096)
	plant := func(n, at int) []byte {
		b := append([]byte{}, junk...)
		return append(append(b[:2000:2000], p[at:at+n]...), junk[2000:]...)
	}
	s := New()
	s.AddPlaintext("p", p)
	if h := s.ScanBytes("x", plant(16, 12345)); len(h) != 1 || h[0].Length != 16 || h[0].Offset != 2000 {
		t.Fatalf("16-byte leak: %s", Format(h))
	}
	if h := s.ScanBytes("x", plant(15, 12345)); len(h) != 0 {
		t.Fatalf("15-byte run reported: %s", Format(h))
	}
	s8 := New()
	s8.Stride = 8
	s8.AddPlaintext("p", p)
	for shift := range 8 {
		if h := s8.ScanBytes("x", plant(23, 4000+shift)); len(h) != 1 {
			t.Fatalf("stride 8, 23-byte leak at shift %d: %s", shift, Format(h))
		}
	}
	if s8.Stats().Windows*7 > s.Stats().Windows {
		t.Fatalf("stride 8 indexed %d windows vs %d", s8.Stats().Windows, s.Stats().Windows)
	}
}

// TestLowVarietyAndIgnore: zero runs and two-value patterns are not windows; Ignore works.
func TestLowVarietyAndIgnore(t *testing.T) {
	p := append(append(make([]byte, 100), bytes.Repeat([]byte{0xab, 0xcd}, 50)...), []byte("IMGFS\x01c\x00\x01\x10\x00\x00\x00\x00\x00\x00")...)
	s := New()
	s.AddPlaintext("p", p)
	if h := s.ScanBytes("zeros", append(make([]byte, 1000), bytes.Repeat([]byte{0xcd, 0xab}, 500)...)); len(h) != 0 {
		t.Fatalf("low-variety windows reported: %s", Format(h))
	}
	hdr := p[200:]
	if h := s.ScanBytes("hdr", hdr); len(h) != 1 {
		t.Fatalf("header window not found: %s", Format(h))
	}
	s.Ignore(hdr)
	if h := s.ScanBytes("hdr", hdr); len(h) != 0 {
		t.Fatalf("ignored window reported: %s", Format(h))
	}
}

// TestChunkBoundary: ScanReader finds runs and names across its 1 MiB chunks, with
// offsets in the whole stream, and merges a long run into one hit.
func TestChunkBoundary(t *testing.T) {
	p := randBytes(5, 3<<20)
	s := New()
	s.AddPlaintext("p", p)
	s.AddName("Vacation-2024")
	data := randBytes(6, 3<<20)
	at := 1<<20 - 1024 - 7 // straddles the first chunk's scan limit
	copy(data[at:], p[50:50+40])
	nameAt := 2<<20 - 2*1024 + 3
	copy(data[nameAt:], "...Vacation-2024...")
	long := 2<<20 + 100
	copy(data[long:], p[long:long+300_000])
	hits, err := s.ScanReader("stream", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]int{int64(at): 40, int64(nameAt + 3): 13, int64(long): 300_000}
	for _, h := range hits {
		if n, ok := want[h.Offset]; ok && n == h.Length {
			delete(want, h.Offset)
		}
	}
	if len(want) > 0 {
		t.Fatalf("missing %v in %s", want, Format(hits))
	}
	// The name also leaks as a (16-byte) window only if zero-padded; here: 1 window hit for
	// the 40-byte run, 1 for the long run, and name hits (raw form) for the name.
	if w := windowHits(hits); len(w) != 2 {
		t.Fatalf("want 2 window hits, got %s", Format(w))
	}
}

// TestNameForms: every T2 form of a name, at every alignment inside a longer encoded text,
// is found.
func TestNameForms(t *testing.T) {
	name := "Holiday in Paris.jpg"
	s := New()
	s.AddName(name)
	s.AddName("abc") // too short for T2
	nb := []byte(name)
	cases := map[string]string{
		"raw":       "path=/photos/" + name + "&x=1",
		"lowercase": strings.ToLower(name),
		"uppercase": "X" + strings.ToUpper(name),
		"hex":       "id " + hex.EncodeToString(nb),
		"HEX":       strings.ToUpper(hex.EncodeToString(nb)),
	}
	for k := range 3 {
		pre := bytes.Repeat([]byte{'q'}, k)
		cases["base64/"+string(rune('0'+k))] = base64.StdEncoding.EncodeToString(append(append(pre, nb...), "tail"...))
		cases["base64url/"+string(rune('0'+k))] = base64.RawURLEncoding.EncodeToString(append(append(pre, nb...), 0xff, 0xfe))
	}
	for k := range 5 {
		pre := bytes.Repeat([]byte{'z'}, k)
		cases["base32/"+string(rune('0'+k))] = base32.StdEncoding.EncodeToString(append(append(pre, nb...), '!'))
		cases["base32lower/"+string(rune('0'+k))] = strings.ToLower(base32.StdEncoding.EncodeToString(append(pre, nb...)))
	}
	for form, text := range cases {
		hits := s.ScanBytes(form, []byte(text))
		found := false
		for _, h := range hits {
			if h.Kind == Name && strings.Contains(h.Source, "Holiday") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: name not found in %q: %s", form, text, Format(hits))
		}
	}
	if h := s.ScanBytes("short", []byte("xx abc yy")); len(h) != 0 {
		t.Errorf("3-char name matched: %s", Format(h))
	}
	if h := s.ScanName("c/ab/" + hex.EncodeToString(nb)); len(h) == 0 {
		t.Errorf("hex name in an object name not found")
	}
}

// TestShortNameInCiphertext: a 4-byte name is reported in text, not by chance in random bytes.
func TestShortNameInCiphertext(t *testing.T) {
	s := New()
	s.AddName("cats")
	r := randBytes(7, 8192)
	copy(r[4000:], "cats")
	if h := s.ScanBytes("random", r); len(h) != 0 {
		t.Fatalf("chance match in random bytes reported: %s", Format(h))
	}
	text := bytes.Repeat([]byte("dir=dogs/ "), 400)
	copy(text[2000:], "cats")
	if h := s.ScanBytes("text", text); len(h) != 1 || h[0].Offset != 2000 {
		t.Fatalf("name in text: %s", Format(h))
	}
}

// TestSealedStoreClean is the negative test: a local store holding sealed images and an
// encrypted tree of names has no hit; the same store with one planted plaintext object has.
func TestSealedStoreClean(t *testing.T) {
	dir := t.TempDir()
	store, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cs := keyring.Secret(randBytes(8, 32))
	mk := keyring.Secret(randBytes(9, 32))
	s := New()
	type entry struct {
		Name string
		Size int64
		Loc  string
	}
	var tree []entry
	ctx := context.Background()
	for i := range 12 {
		name := []string{"IMG_0001.JPG", "Grandma's birthday.png", "passport-scan.jpg", "x"}[i%4] + strings.Repeat("~", i/4)
		img := testImage(t, uint64(10+i), 120+i*17, 90+i*5, i%2 == 0)
		s.AddPlaintext(name, img)
		s.AddName(name)
		var obj bytes.Buffer
		ref, err := dedup.Seal(cs, bytes.NewReader(img), int64(len(img)), &obj)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dedup.Upload(ctx, store, ref.Locator, bytes.NewReader(obj.Bytes()), int64(obj.Len())); err != nil {
			t.Fatal(err)
		}
		tree = append(tree, entry{name, ref.Size, ref.Locator.String()})
		s.Ignore([]byte(ref.Locator.String())) // the tree names its objects; that is no leak
	}
	s.AddName("Family photos")
	plainTree, _ := json.Marshal(map[string]any{"dir": "Family photos", "entries": tree})
	s.AddPlaintext("tree", plainTree)
	mobj, mloc, err := dedup.SealMeta(mk, "tree", plainTree)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, dedup.MetaName(mloc), bytes.NewReader(mobj), int64(len(mobj))); err != nil {
		t.Fatal(err)
	}
	hits, err := s.ScanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 0 {
		t.Fatalf("sealed store leaks: %s", Format(hits))
	}
	if st := s.Stats(); st.Windows < 50_000 || st.Names != 13 || st.Stride != 1 {
		t.Fatalf("index too small to mean anything: %+v", st)
	}
	// Positive control on the same store: the plaintext tree stored as an object.
	if err := store.Put(ctx, "m/00/plain", bytes.NewReader(plainTree), int64(len(plainTree))); err != nil {
		t.Fatal(err)
	}
	hits, err = s.ScanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, h := range hits {
		if h.Kind == Name {
			names[h.Source[:strings.Index(h.Source, " as ")]] = true
		}
	}
	if len(windowHits(hits)) == 0 || len(names) != 10 { // 9 names of >= 4 bytes + "Family photos"
		t.Fatalf("planted tree: %d window hits, names %v", len(windowHits(hits)), names)
	}
}

// BenchmarkScan measures scanning random (ciphertext-like) bytes against a 4 MB index
// (every window) and a 64 MB one (automatic stride 8), with 100 names.
func BenchmarkScan(b *testing.B) {
	for _, mb := range []int{0, 4, 64} {
		b.Run(fmt.Sprintf("index%dMB", mb), func(b *testing.B) { benchScan(b, mb) })
	}
}

func benchScan(b *testing.B, mb int) {
	s := New()
	s.AddPlaintext("p", randBytes(1, max(mb<<20, 64<<10)))
	for i := range 100 {
		s.AddName("photo-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + ".jpg")
	}
	data := randBytes(2, 16<<20)
	s.ScanBytes("warm", data[:1024])
	b.SetBytes(int64(len(data)))
	start, n := cpuNow(), 0
	for b.Loop() {
		if h := s.ScanBytes("d", data); len(h) != 0 {
			b.Fatal(Format(h))
		}
		n++
	}
	b.ReportMetric(float64(n*len(data))/(cpuNow()-start)/1e6, "MB/cpu-s")
}

// cpuNow is the process CPU time in seconds (user + system): on a loaded machine it
// measures the work, not the wait for a core.
func cpuNow() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// TestAutoStride: past AutoStrideBytes the index keeps offsets = 0 mod 8 only, and
// 23-byte leaks from early and late plaintexts are still found.
func TestAutoStride(t *testing.T) {
	s := New()
	a := randBytes(11, 1<<20)
	s.AddPlaintext("a", a)
	if st := s.Stats(); st.Stride != 1 {
		t.Fatalf("small corpus: %+v", st)
	}
	big := randBytes(12, AutoStrideBytes)
	s.AddPlaintext("big", big)
	st := s.Stats()
	if st.Stride != 8 || st.Windows > (len(a)+len(big))/8+2 {
		t.Fatalf("large corpus: %+v", st)
	}
	for _, c := range []struct {
		src []byte
		at  int
	}{{a, 1001}, {a, 5}, {big, 77777}, {big, 3}} {
		data := randBytes(13, 5000)
		copy(data[100:], c.src[c.at:c.at+23])
		if h := s.ScanBytes("d", data); len(h) != 1 || h[0].Offset > 107 {
			t.Fatalf("23-byte leak at %d: %s", c.at, Format(h))
		}
	}
}

// TestNamesInLocators: short names made of hex digits ("2024", "cafe") inside hex locators
// and sequence numbers are chance, not leaks; the same names in text, and a hex-encoded
// name inside an object name, are leaks.
func TestNamesInLocators(t *testing.T) {
	s := New()
	for _, n := range []string{"2024", "cafe", "beef12", "Holidays"} {
		s.AddName(n)
	}
	for _, name := range []string{"c/20/2024cafebeef12" + strings.Repeat("0", 46), "r/00000000000000002024", "m/ca/cafe" + strings.Repeat("9", 60)} {
		if h := s.ScanName(name); len(h) != 0 {
			t.Errorf("%s: %s", name, Format(h))
		}
	}
	if h := s.ScanName("c/ab/" + hex.EncodeToString([]byte("2024")) + strings.Repeat("0", 56)); len(h) == 0 {
		t.Error("hex-encoded name in an object name not found")
	}
	if h := s.ScanBytes("log", []byte("GET /photos/2024/ HTTP/1.1")); len(h) != 1 {
		t.Errorf("name in text: %s", Format(h))
	}
}

// TestSecretForms: a key printed in any common form into a log is found (T10 helper).
func TestSecretForms(t *testing.T) {
	key := randBytes(31, 32)
	s := New()
	s.AddSecret("MK", key)
	for _, line := range []string{
		"debug: key=" + hex.EncodeToString(key) + " ok",
		"K " + strings.ToUpper(hex.EncodeToString(key)),
		`{"k":"` + base64.StdEncoding.EncodeToString(key) + `"}`,
		base64.RawURLEncoding.EncodeToString(key),
		base32.StdEncoding.EncodeToString(key),
		fmt.Sprintf("keys %v", key),
		fmt.Sprintf("%#v", key),
		"raw " + string(key),
	} {
		if h := s.ScanBytes("log", []byte(line)); len(h) == 0 {
			t.Errorf("key not found in %.40q", line)
		}
	}
	if h := s.ScanBytes("log", []byte("key=[redacted] "+hex.EncodeToString(randBytes(32, 32)))); len(h) != 0 {
		t.Errorf("false hit: %s", Format(h))
	}
}
