// Package leakscan finds plaintext in stored bytes (docs/security-tests.md): T1 (no 16-byte
// window of any plaintext in any stored byte or object name) and T2 (no file or directory name
// in raw, lower/upper case, hex, base32 or base64/base64url form).
//
// Usage from any package's tests:
//
//	s := leakscan.New()
//	s.AddPlaintext("a.jpg", imageBytes) // or s.AddFile(path), s.AddTree(dir)
//	s.AddName("a.jpg")
//	hits, err := s.ScanDir(storeDir)   // bodies and relative paths of every file
//	hits = append(hits, s.ScanBytes("request log", logBytes)...)
//	if len(hits) > 0 { t.Fatalf("leak: %s", leakscan.Format(hits)) }
//
// For T10, s.AddSecret("MK", keys.MasterKey) indexes a key in its raw, hex, base64, base32
// and Go byte-slice forms; scan logs, stderr and panic output with ScanBytes.
//
// Index: every 16-byte window of every plaintext (only offsets = 0 mod 8 once the
// plaintexts exceed AutoStrideBytes, or Stride if set), windows with at most 2 distinct byte
// values skipped, keyed by a 64-bit hash. A scan hashes every window of the scanned bytes,
// so any leaked run of 16 bytes (23 bytes with stride 8) is found. Every hit is
// confirmed byte-exactly; consecutive window hits are merged into one Hit.
//
// Names (T2) of 4 or more bytes are matched as substrings in all their forms. Two kinds of
// chance matches are dropped: one shorter than 6 bytes inside a random-looking region (high
// byte entropy, as ciphertext is; a 4-byte string occurs by chance once per 4 GiB of random
// bytes), and a non-hex form shorter than 12 characters made of hex digits inside a run of
// 20 or more hex digits (a year folder "2024" inside a locator). In text or structured
// plaintext short names are kept.
//
// Plaintexts that legitimately contain store-visible strings (metadata that names its
// objects by locator) need those strings passed to Ignore, or the object names match.
//
// Plaintexts and names are held in memory (no copy of AddPlaintext's slice is made; do
// not modify it). After the first scan the scanner is read-only and may be used from
// several goroutines; adding more plaintexts after a scan rebuilds the index.
package leakscan

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// W is the window length of the T1 scan.
const W = 16

// Kind says which check found a hit.
type Kind string

const (
	Window Kind = "window" // T1: a run of plaintext bytes
	Name   Kind = "name"   // T2: a file or directory name in some form
)

// Hit is one confirmed leak.
type Hit struct {
	Where  string // label of the scanned bytes: a file path, "name:" + path, or a caller's label
	Offset int64  // byte offset in the scanned bytes
	Length int    // length of the leaked run
	Kind   Kind
	Source string // plaintext label and offset ("a.jpg@4096"), or name and form ("a.jpg as base64")
}

func (h Hit) String() string {
	return fmt.Sprintf("%s at %s+%d (%d bytes) from %s", h.Kind, h.Where, h.Offset, h.Length, h.Source)
}

// Format lists hits, at most 20, one a line.
func Format(hits []Hit) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d leak(s)", len(hits))
	for i, h := range hits {
		if i == 20 {
			fmt.Fprintf(&b, "\n  ... %d more", len(hits)-20)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(h.String())
	}
	return b.String()
}

type source struct {
	label string
	data  []byte
}

type entry struct {
	h   uint64 // mixed window hash
	src uint32
	off uint32
}

type pattern struct {
	b    []byte
	name string
	form string
}

// Scanner holds the plaintext index. The zero value is not usable; call New.
type Scanner struct {
	// Stride, if > 0, indexes windows at offsets = 0 mod Stride in every plaintext
	// (detects runs of >= 16+Stride-1 bytes). 0 = automatic: every window while the
	// plaintexts total at most AutoStrideBytes, then only offsets = 0 mod 8 (a leaked run
	// of 23 bytes or more is still found, and the scan stays fast: the index stays small).
	Stride int
	// MaxHits caps the hits one scan call returns (0 = 1000).
	MaxHits int

	mu      sync.Mutex
	total   int64 // plaintext bytes added
	thinned bool  // automatic stride switched to 8
	srcs    []source
	entries []entry
	names   map[string]bool
	ignore  map[[W]byte]bool
	ready   bool

	// Built by prepare.
	bitsLog uint
	bloom   []uint64 // blocked Bloom filter of the mixed hashes, 2^bitsLog bits
	bucket  []uint32 // bucket[k] = first entry with top bucketLog bits >= k
	bktLog  uint
	pats    map[uint32][]pattern
	pbloom  []uint64 // 2^16 bits over the first 4 bytes of patterns
}

// AutoStrideBytes is the plaintext total above which the automatic stride becomes 8.
const AutoStrideBytes = 8 << 20

// New returns an empty scanner.
func New() *Scanner {
	return &Scanner{names: map[string]bool{}, ignore: map[[W]byte]bool{}}
}

// whash hashes the 16-byte window at w[0:16]. It has no state carried from one position to
// the next (unlike a rolling hash), so a scan computes hashes of consecutive windows in
// parallel: two unaligned 8-byte loads and three multiplications per byte.
func whash(w []byte) uint64 {
	h := binary.LittleEndian.Uint64(w)*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(w[8:16])*0xc2b2ae3d27d4eb4f
	h ^= h >> 32
	h *= 0xbf58476d1ce4e5b9
	return h ^ h>>29
}

// lowVariety reports windows with at most 2 distinct byte values (runs of zeros, 0xff
// fills, alternating patterns): they occur everywhere and are excluded by T1.
func lowVariety(w []byte) bool {
	a := w[0]
	b := a
	for _, c := range w[1:W] {
		if c == a || c == b {
			continue
		}
		if a == b {
			b = c
			continue
		}
		return false
	}
	return true
}

// AddPlaintext indexes the windows of b under label. b is kept, not copied.
func (s *Scanner) AddPlaintext(label string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = false
	const maxSrc = 1<<32 - 1
	for start := 0; ; start += maxSrc - W {
		end := min(len(b), start+maxSrc)
		l := label
		if start > 0 {
			l = fmt.Sprintf("%s(part at %d)", label, start)
		}
		s.addSource(l, b[start:end])
		if end == len(b) {
			return
		}
	}
}

func (s *Scanner) addSource(label string, b []byte) {
	idx := uint32(len(s.srcs))
	s.srcs = append(s.srcs, source{label, b})
	s.total += int64(len(b))
	stride := s.Stride
	if stride <= 0 {
		if !s.thinned && s.total > AutoStrideBytes {
			// Switch to stride 8 and drop the windows indexed so far at other offsets.
			s.thinned = true
			s.entries = slices.DeleteFunc(s.entries, func(e entry) bool { return e.off%8 != 0 })
		}
		stride = 1
		if s.thinned {
			stride = 8
		}
	}
	for o := 0; o+W <= len(b); o += stride {
		w := b[o : o+W]
		if lowVariety(w) {
			continue
		}
		s.entries = append(s.entries, entry{whash(w), idx, uint32(o)})
	}
}

// AddFile reads path and indexes it as a plaintext labelled with the path.
func (s *Scanner) AddFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s.AddPlaintext(path, b)
	return nil
}

// AddTree indexes every regular file under dir as a plaintext, and the name of every file
// and directory below dir as a name.
func (s *Scanner) AddTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		s.AddName(d.Name())
		if d.Type().IsRegular() {
			return s.AddFile(p)
		}
		return nil
	})
}

// AddName registers a file or directory name for T2 (names shorter than 4 bytes are
// ignored there) and its bytes, zero-padded to 16 if shorter, as a T1 plaintext.
func (s *Scanner) AddName(name string) {
	if name == "" {
		return
	}
	p := []byte(name)
	if len(p) < W {
		p = append(p, make([]byte, W-len(p))...)
	}
	s.AddPlaintext("name "+quote(name), p)
	s.mu.Lock()
	s.names[name] = true
	s.ready = false
	s.mu.Unlock()
}

// AddSecret indexes key material (T10) in the forms a log line or error could carry it:
// raw, hex, HEX, base64, base64url, base32, and Go's %v and %#v forms of a byte slice.
// Any 16-byte run of any form is a hit, labelled "secret <label> (<form>)".
func (s *Scanner) AddSecret(label string, key []byte) {
	forms := []struct{ form, v string }{
		{"raw", string(key)},
		{"hex", hex.EncodeToString(key)},
		{"HEX", strings.ToUpper(hex.EncodeToString(key))},
		{"base64", base64.StdEncoding.EncodeToString(key)},
		{"base64url", base64.RawURLEncoding.EncodeToString(key)},
		{"base32", base32.StdEncoding.EncodeToString(key)},
		{"%v", fmt.Sprint(key)},
		{"%#v", fmt.Sprintf("%#v", key)},
	}
	for _, f := range forms {
		s.AddPlaintext(fmt.Sprintf("secret %s (%s)", label, f.form), []byte(f.v))
	}
}

// Ignore excludes every 16-byte window of b from T1 hits (e.g. a fixed format header
// template that also occurs in a plaintext).
func (s *Scanner) Ignore(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for o := 0; o+W <= len(b); o++ {
		s.ignore[[W]byte(b[o:o+W])] = true
	}
}

func quote(s string) string {
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// prepare sorts the index and builds the filters. Caller holds s.mu.
func (s *Scanner) prepare() {
	if s.ready {
		return
	}
	slices.SortFunc(s.entries, func(a, b entry) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return 0
	})
	n := len(s.entries)
	// Blocked Bloom bitmap with 8-16 bits per entry (2 bits set per entry: ~5 % false
	// positives at 8), small enough to stay mostly in cache.
	s.bitsLog = uint(max(16, bits.Len(uint(n))+3))
	s.bloom = make([]uint64, 1<<(s.bitsLog-6))
	s.bktLog = uint(max(8, bits.Len(uint(n))))
	s.bucket = make([]uint32, (1<<s.bktLog)+1)
	for _, e := range s.entries {
		w, m := s.bloomBits(e.h)
		s.bloom[w] |= m
		s.bucket[(e.h>>(64-s.bktLog))+1]++
	}
	for i := 1; i < len(s.bucket); i++ {
		s.bucket[i] += s.bucket[i-1]
	}
	s.buildPatterns()
	s.ready = true
}

// bloomBits maps a mixed hash to a word of the blocked bitmap and two bits in it (top
// bits pick the word, the low 12 bits the two bit positions): about 1.5 % of random
// windows pass at 16 bits per entry, with one memory access.
func (s *Scanner) bloomBits(h uint64) (word uint64, mask uint64) {
	return h >> (64 - s.bitsLog + 6), 1<<(h&63) | 1<<((h>>6)&63)
}

// nameForms returns the encodings of name searched by T2.
func nameForms(name string) map[string]string {
	forms := map[string]string{}
	add := func(form, v string) {
		if len(v) >= 4 {
			if _, ok := forms[v]; !ok {
				forms[v] = form
			}
		}
	}
	b := []byte(name)
	add("raw", name)
	add("lowercase", strings.ToLower(name))
	add("uppercase", strings.ToUpper(name))
	add("hex", hex.EncodeToString(b))
	add("HEX", strings.ToUpper(hex.EncodeToString(b)))
	// Base64 and base32 inside a longer encoded text depend on the name's alignment: for
	// each alignment keep the characters that encode name bits only (at least 5 of them).
	for k := range 3 {
		for _, e := range []struct {
			form string
			enc  *base64.Encoding
		}{{"base64", base64.RawStdEncoding}, {"base64url", base64.RawURLEncoding}} {
			if v := aligned(e.enc.EncodeToString(append(make([]byte, k), b...)), k, len(b), 6); len(v) >= 5 {
				add(e.form, v)
			}
		}
	}
	for k := range 5 {
		for _, e := range []struct {
			form string
			enc  *base32.Encoding
		}{{"base32", base32.StdEncoding.WithPadding(base32.NoPadding)}, {"base32hex", base32.HexEncoding.WithPadding(base32.NoPadding)}} {
			if v := aligned(e.enc.EncodeToString(append(make([]byte, k), b...)), k, len(b), 5); len(v) >= 5 {
				add(e.form, v)
				add(e.form+" lowercase", strings.ToLower(v))
			}
		}
	}
	return forms
}

// aligned keeps the characters of enc (the encoding of k zero bytes || name of n bytes,
// bitsPer bits a character) that depend on name bits only.
func aligned(enc string, k, n, bitsPer int) string {
	first := (8*k + bitsPer - 1) / bitsPer
	last := 8 * (k + n) / bitsPer // exclusive
	if last > len(enc) {
		last = len(enc)
	}
	if first >= last {
		return ""
	}
	return enc[first:last]
}

func u32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func pbit(k uint32) uint32 { return (k * 0x9e3779b1) >> 16 }

func (s *Scanner) buildPatterns() {
	s.pats = map[uint32][]pattern{}
	s.pbloom = make([]uint64, 1<<16/64)
	for name := range s.names {
		if len(name) < 4 {
			continue
		}
		for v, form := range nameForms(name) {
			k := u32([]byte(v))
			s.pats[k] = append(s.pats[k], pattern{[]byte(v), name, form})
			b := pbit(k)
			s.pbloom[b>>6] |= 1 << (b & 63)
		}
	}
}

// scanState carries merging state across the chunks of one scanned stream.
type scanState struct {
	s     *Scanner
	where string
	hits  []Hit
	max   int
	total int
	// current T1 run: data [runStart, runEnd), source src at srcStart
	run      bool
	runStart int64
	runEnd   int64
	lastWin  int64
	src      uint32
	srcStart int64
	lastSrc  int64
	// name hits already reported (end offset per pattern start) to skip duplicates
	lastName map[string]int64
}

func (st *scanState) add(h Hit) {
	st.total++
	if len(st.hits) < st.max {
		st.hits = append(st.hits, h)
	}
}

func (st *scanState) flush() {
	if st.run {
		src := st.s.srcs[st.src]
		st.add(Hit{Where: st.where, Offset: st.runStart, Length: int(st.runEnd - st.runStart), Kind: Window,
			Source: fmt.Sprintf("%s@%d", src.label, st.srcStart)})
		st.run = false
	}
}

// window handles the window at data offset o (bytes w) whose mixed hash passed the bitmap.
func (st *scanState) window(w []byte, h uint64, o int64) {
	s := st.s
	k := h >> (64 - s.bktLog)
	lo, hi := s.bucket[k], s.bucket[k+1]
	var first *entry
	for i := lo; i < hi; i++ {
		e := &s.entries[i]
		if e.h != h {
			continue
		}
		src := s.srcs[e.src].data
		if !bytes.Equal(src[e.off:int(e.off)+W], w) {
			continue
		}
		// Continues the current run (same source, same relative shift, overlapping)?
		if st.run && e.src == st.src && o <= st.runEnd && int64(e.off)-st.lastSrc == o-st.lastWin {
			st.lastWin, st.lastSrc, st.runEnd = o, int64(e.off), o+W
			return
		}
		if first == nil {
			first = e
		}
	}
	if first == nil {
		return
	}
	if len(s.ignore) > 0 && s.ignore[[W]byte(w)] {
		return
	}
	st.flush()
	st.run = true
	st.runStart, st.runEnd, st.lastWin = o, o+W, o
	st.src, st.srcStart, st.lastSrc = first.src, int64(first.off), int64(first.off)
}

// entropy returns the Shannon entropy in bits per byte of b.
func entropy(b []byte) float64 {
	var c [256]int
	for _, x := range b {
		c[x]++
	}
	n := float64(len(b))
	e := 0.0
	for _, k := range c {
		if k > 0 {
			p := float64(k) / n
			e -= p * math.Log2(p)
		}
	}
	return e
}

// randomLooking reports whether the region around [o, o+n) of buf looks like ciphertext.
func randomLooking(buf []byte, o, n int) bool {
	lo, hi := max(0, o-512), min(len(buf), o+n+512)
	if hi-lo < 512 {
		return false
	}
	// Uniform bytes give about 8 - 255/(2 n ln 2) bits; text and structured data far less.
	return entropy(buf[lo:hi]) > 7.9-255/(2*float64(hi-lo)*math.Ln2)
}

func isHex(c byte) bool { return c-'0' < 10 || c-'a' < 6 || c-'A' < 6 }

// inHexRun reports whether buf[o:o+n] consists of hex digits inside a run of at least 20
// of them (a locator, checksum or sequence number in an object name or log line): a name
// such as "2024" or "cafe" occurs there by chance (once per 65536 positions), so such a
// match of fewer than 12 characters is not a leak. Hex-encoded names are still matched.
func inHexRun(buf []byte, o, n int) bool {
	for _, c := range buf[o : o+n] {
		if !isHex(c) {
			return false
		}
	}
	lo, hi := o, o+n
	for lo > 0 && isHex(buf[lo-1]) {
		lo--
	}
	for hi < len(buf) && isHex(buf[hi]) {
		hi++
	}
	return hi-lo >= 20
}

// names scans buf[from:to) (buf holds data offsets base..) for name patterns.
func (st *scanState) names(buf []byte, base int64, from, to int) {
	s := st.s
	for i := from; i < to && i+4 <= len(buf); i++ {
		k := u32(buf[i:])
		b := pbit(k)
		if s.pbloom[b>>6]&(1<<(b&63)) == 0 {
			continue
		}
		for _, p := range s.pats[k] {
			if i+len(p.b) > len(buf) || !bytes.Equal(buf[i:i+len(p.b)], p.b) {
				continue
			}
			if len(p.b) < 6 && randomLooking(buf, i, len(p.b)) {
				continue
			}
			if p.form != "hex" && p.form != "HEX" && len(p.b) < 12 && inHexRun(buf, i, len(p.b)) {
				continue
			}
			key := p.name + "\x00" + p.form
			if end, ok := st.lastName[key]; ok && base+int64(i) < end {
				continue
			}
			if st.lastName == nil {
				st.lastName = map[string]int64{}
			}
			st.lastName[key] = base + int64(i) + int64(len(p.b))
			st.add(Hit{Where: st.where, Offset: base + int64(i), Length: len(p.b), Kind: Name,
				Source: quote(p.name) + " as " + p.form})
		}
	}
}

const maxPattern = 1024 // names longer than this are still found by their 16-byte windows

func (s *Scanner) newState(where string) *scanState {
	s.mu.Lock()
	s.prepare()
	s.mu.Unlock()
	m := s.MaxHits
	if m <= 0 {
		m = 1000
	}
	return &scanState{s: s, where: where, max: m}
}

// scanChunk scans buf, whose byte 0 is at data offset base; windows starting at
// [from, to) and name matches starting there are checked.
func (st *scanState) scanChunk(buf []byte, base int64, from, to int) {
	s := st.s
	if len(s.entries) > 0 && len(buf) >= W {
		shift := 64 - s.bitsLog + 6
		bloom := s.bloom
		end := min(to, len(buf)-W+1)
		for o := from; o < end; o++ {
			m := whash(buf[o : o+W])
			if mask := uint64(1)<<(m&63) | 1<<((m>>6)&63); bloom[m>>shift]&mask == mask {
				st.window(buf[o:o+W], m, base+int64(o))
			}
		}
	}
	if len(s.pats) > 0 {
		st.names(buf, base, from, to)
	}
}

// ScanBytes scans b (labelled where) and returns the confirmed hits.
func (s *Scanner) ScanBytes(where string, b []byte) []Hit {
	st := s.newState(where)
	st.scanChunk(b, 0, 0, len(b))
	st.flush()
	return st.hits
}

// ScanName scans an object name or path (labelled "name:" + name).
func (s *Scanner) ScanName(name string) []Hit {
	return s.ScanBytes("name:"+name, []byte(name))
}

// ScanReader scans everything r yields in 1 MiB chunks, without holding it all.
func (s *Scanner) ScanReader(where string, r io.Reader) ([]Hit, error) {
	st := s.newState(where)
	const chunk = 1 << 20
	keep := maxPattern // bytes carried to the next chunk, so matches across chunks are seen
	buf := make([]byte, 0, chunk+keep)
	var base int64 // data offset of buf[0]
	scanned := 0   // buf[:scanned] has had its starting positions scanned
	for {
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		eof := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !eof {
			st.flush()
			return st.hits, err
		}
		if eof {
			st.scanChunk(buf, base, scanned, len(buf))
			st.flush()
			return st.hits, nil
		}
		// Scan starts that have a full keep-byte lookahead; carry the rest.
		to := len(buf) - keep
		st.scanChunk(buf, base, scanned, to)
		copy(buf, buf[to:])
		buf = buf[:keep]
		base += int64(to)
		scanned = 0
	}
}

// ScanFile scans the bytes of one file (labelled with path).
func (s *Scanner) ScanFile(path string) ([]Hit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return s.ScanReader(path, f)
}

// ScanDir scans every regular file under dir: its path relative to dir (as an object name)
// and its bytes. Symlinks and other special files are not followed.
func (s *Scanner) ScanDir(dir string) ([]Hit, error) {
	var hits []Hit
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil // removed while walking
			}
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		hits = append(hits, s.ScanName(filepath.ToSlash(rel))...)
		if !d.Type().IsRegular() {
			return nil
		}
		h, err := s.ScanFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		hits = append(hits, h...)
		return err
	})
	return hits, err
}

// Stats describes the index.
type Stats struct {
	Plaintexts int // sources indexed (names included)
	Stride     int // 1 or 8 (automatic), or the Stride set
	Windows    int // indexed windows
	Names      int // names for T2
}

// Stats returns the index size.
func (s *Scanner) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Plaintexts: len(s.srcs), Stride: s.Stride, Windows: len(s.entries), Names: len(s.names)}
	if st.Stride <= 0 {
		st.Stride = 1
		if s.thinned {
			st.Stride = 8
		}
	}
	return st
}
