// Package storetest is the conformance suite every backend.Store implementation must pass.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) backend.Store { return newStore(t) })
//	}
//
// newStore must return an empty store that the subtest may fill; it should register its own
// cleanup with t.Cleanup. Object names follow the vault's layout ("c/ab/<64 hex>", "r/<20
// digits>", "vault") so that remote stores see realistic keys.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
)

// Options tunes the suite for slow stores.
type Options struct {
	// LargeSize is the size of the large-object test (default 24 MiB).
	LargeSize int64
	// Writers is the number of concurrent writers of one name (default 8).
	Writers int
	// Rounds is how often the concurrent-writer race is repeated (default 5).
	Rounds int
}

// Run runs the whole suite with default options.
func Run(t *testing.T, newStore func(t *testing.T) backend.Store) {
	RunOptions(t, newStore, Options{})
}

// RunOptions runs the whole suite.
func RunOptions(t *testing.T, newStore func(t *testing.T) backend.Store, o Options) {
	if o.LargeSize == 0 {
		o.LargeSize = 24 << 20
	}
	if o.Writers == 0 {
		o.Writers = 8
	}
	if o.Rounds == 0 {
		o.Rounds = 5
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s backend.Store)
	}{
		{"PutGet", testPutGet},
		{"PutExisting", testPutExisting},
		{"Missing", testMissing},
		{"Ranges", testRanges},
		{"Empty", testEmpty},
		{"Delete", testDelete},
		{"List", testList},
		{"ListStop", testListStop},
		{"InvalidNames", testInvalidNames},
		{"ShortSource", testShortSource},
		{"Cancel", testCancel},
		{"CancelDuringPut", testCancelDuringPut},
		{"ParallelDistinct", testParallelDistinct},
		{"ConcurrentSameName", func(t *testing.T, s backend.Store) { testConcurrentSameName(t, s, o.Writers, o.Rounds) }},
		{"Overwrite", testOverwrite},
		{"Large", func(t *testing.T, s backend.Store) { testLarge(t, s, o.LargeSize) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			tc.fn(t, s)
		})
	}
}

// Name returns a content-style object name "c/ab/<64 hex>" derived from seed.
func Name(prefix, seed string) string {
	h := sha256.Sum256([]byte(seed))
	x := hex.EncodeToString(h[:])
	return prefix + "/" + x[:2] + "/" + x
}

// RandBytes returns n random bytes.
func RandBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// MustPut stores data under name and fails the test on error.
func MustPut(t *testing.T, s backend.Store, name string, data []byte) {
	t.Helper()
	if err := s.Put(ctxT(t), name, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%s, %d bytes): %v", name, len(data), err)
	}
}

// ReadAll returns the bytes [off, off+length) of name.
func ReadAll(ctx context.Context, s backend.Store, name string, off, length int64) ([]byte, error) {
	rc, err := s.Get(ctx, name, off, length)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return b, err
}

func mustGet(t *testing.T, s backend.Store, name string, off, length int64) []byte {
	t.Helper()
	b, err := ReadAll(ctxT(t), s, name, off, length)
	if err != nil {
		t.Fatalf("Get(%s, %d, %d): %v", name, off, length, err)
	}
	return b
}

func testPutGet(t *testing.T, s backend.Store) {
	for _, n := range []int{1, 15, 16, 17, 4096, 65535, 65536, 65537, 1<<20 + 3} {
		name := Name("c", fmt.Sprint("putget", n))
		data := RandBytes(n)
		MustPut(t, s, name, data)
		if got := mustGet(t, s, name, 0, -1); !bytes.Equal(got, data) {
			t.Fatalf("size %d: Get returned %d bytes, not the stored ones", n, len(got))
		}
		info, err := s.Stat(ctxT(t), name)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if info.Size != int64(n) {
			t.Fatalf("Stat size = %d, want %d", info.Size, n)
		}
	}
	// Names that are not content-style.
	for _, name := range []string{"vault", "r/00000000000000000001", "k/" + hex.EncodeToString(RandBytes(32))} {
		data := RandBytes(100)
		MustPut(t, s, name, data)
		if got := mustGet(t, s, name, 0, -1); !bytes.Equal(got, data) {
			t.Fatalf("%s: wrong bytes", name)
		}
	}
}

func testPutExisting(t *testing.T, s backend.Store) {
	name := Name("c", "exist")
	first := RandBytes(1000)
	MustPut(t, s, name, first)
	for _, second := range [][]byte{first, RandBytes(1000), RandBytes(10)} {
		err := s.Put(ctxT(t), name, bytes.NewReader(second), int64(len(second)))
		if !errors.Is(err, backend.ErrExist) {
			t.Fatalf("second Put: got %v, want ErrExist", err)
		}
		if backend.IsTransient(err) {
			t.Fatalf("ErrExist must not be transient: %v", err)
		}
	}
	if got := mustGet(t, s, name, 0, -1); !bytes.Equal(got, first) {
		t.Fatal("a refused Put changed the stored object")
	}
}

func testMissing(t *testing.T, s backend.Store) {
	ctx := ctxT(t)
	name := Name("c", "missing")
	if _, err := s.Stat(ctx, name); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Stat missing: %v, want ErrNotExist", err)
	}
	if _, err := ReadAll(ctx, s, name, 0, -1); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Get missing: %v, want ErrNotExist", err)
	}
	if _, err := ReadAll(ctx, s, name, 10, 5); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Get range of missing: %v, want ErrNotExist", err)
	}
	if err := s.Delete(ctx, name); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Delete missing: %v, want ErrNotExist", err)
	}
	// A fan-out folder is not an object.
	MustPut(t, s, name, []byte("x"))
	folder := name[:4] // "c/ab"
	if _, err := s.Stat(ctx, folder); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Stat of folder %s: %v, want ErrNotExist", folder, err)
	}
	if _, err := ReadAll(ctx, s, folder, 0, -1); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Get of folder %s: %v, want ErrNotExist", folder, err)
	}
}

func testRanges(t *testing.T, s backend.Store) {
	const n = 200_000
	data := RandBytes(n)
	name := Name("c", "ranges")
	MustPut(t, s, name, data)
	cases := []struct{ off, length int64 }{
		{0, -1}, {0, n}, {0, 1}, {1, -1}, {n - 1, -1}, {n - 1, 1}, {n - 1, 10}, {65536, 65536},
		{12345, 1}, {12345, 100000}, {0, n + 100}, {100, 0}, {n, -1}, {n, 10}, {n + 5, 3},
	}
	for _, c := range cases {
		end := int64(n)
		if c.length >= 0 && c.off+c.length < end {
			end = c.off + c.length
		}
		want := []byte{}
		if c.off < end {
			want = data[c.off:end]
		}
		got := mustGet(t, s, name, c.off, c.length)
		if !bytes.Equal(got, want) {
			t.Fatalf("Get(off=%d, len=%d): %d bytes, want %d (content differs: %v)", c.off, c.length, len(got), len(want), len(got) == len(want))
		}
	}
	for i := 0; i < 30; i++ {
		off := mrand.Int64N(n)
		length := mrand.Int64N(n-off) + 1
		if got := mustGet(t, s, name, off, length); !bytes.Equal(got, data[off:off+length]) {
			t.Fatalf("random Get(%d, %d): wrong bytes", off, length)
		}
	}
	if _, err := ReadAll(ctxT(t), s, name, -1, 10); err == nil {
		t.Fatal("Get with a negative offset succeeded")
	}
}

func testEmpty(t *testing.T, s backend.Store) {
	name := Name("c", "empty")
	MustPut(t, s, name, nil)
	if got := mustGet(t, s, name, 0, -1); len(got) != 0 {
		t.Fatalf("empty object read back %d bytes", len(got))
	}
	if got := mustGet(t, s, name, 0, 10); len(got) != 0 {
		t.Fatalf("empty object range read back %d bytes", len(got))
	}
	info, err := s.Stat(ctxT(t), name)
	if err != nil || info.Size != 0 {
		t.Fatalf("Stat empty: %+v %v", info, err)
	}
	if err := s.Put(ctxT(t), name, bytes.NewReader(nil), 0); !errors.Is(err, backend.ErrExist) {
		t.Fatalf("second Put of empty object: %v, want ErrExist", err)
	}
	found := false
	err = s.List(ctxT(t), "c/", func(i backend.Info) error {
		if i.Name == name {
			found = true
			if i.Size != 0 {
				t.Errorf("List size of empty object %d", i.Size)
			}
		}
		return nil
	})
	if err != nil || !found {
		t.Fatalf("List: found=%v err=%v", found, err)
	}
}

func testDelete(t *testing.T, s backend.Store) {
	ctx := ctxT(t)
	a, b := Name("c", "del-a"), Name("c", "del-b")
	MustPut(t, s, a, []byte("aaaa"))
	MustPut(t, s, b, []byte("bbbb"))
	if err := s.Delete(ctx, a); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Stat(ctx, a); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Stat after Delete: %v", err)
	}
	if _, err := ReadAll(ctx, s, a, 0, -1); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := s.Delete(ctx, a); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("second Delete: %v, want ErrNotExist", err)
	}
	if got := mustGet(t, s, b, 0, -1); string(got) != "bbbb" {
		t.Fatal("Delete touched another object")
	}
	// A deleted name can be stored again.
	MustPut(t, s, a, []byte("new"))
	if got := mustGet(t, s, a, 0, -1); string(got) != "new" {
		t.Fatalf("re-Put after Delete read %q", got)
	}
}

func testList(t *testing.T, s backend.Store) {
	ctx := ctxT(t)
	want := map[string]int64{}
	put := func(name string, n int) {
		MustPut(t, s, name, RandBytes(n))
		want[name] = int64(n)
	}
	for i := 0; i < 40; i++ {
		put(Name("c", fmt.Sprint("list", i)), i*10)
	}
	for i := 0; i < 5; i++ {
		put(Name("m", fmt.Sprint("list", i)), 7)
	}
	put("r/00000000000000000001", 3)
	put("r/00000000000000000002", 4)
	put("vault", 5)

	list := func(prefix string) map[string]int64 {
		t.Helper()
		got := map[string]int64{}
		err := s.List(ctx, prefix, func(i backend.Info) error {
			if _, dup := got[i.Name]; dup {
				t.Errorf("List(%q) gave %s twice", prefix, i.Name)
			}
			got[i.Name] = i.Size
			return nil
		})
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		return got
	}
	check := func(prefix string) {
		t.Helper()
		exp := map[string]int64{}
		for n, sz := range want {
			if len(n) >= len(prefix) && n[:len(prefix)] == prefix {
				exp[n] = sz
			}
		}
		got := list(prefix)
		if len(got) != len(exp) {
			t.Fatalf("List(%q): %d objects %v, want %d", prefix, len(got), keys(got), len(exp))
		}
		for n, sz := range exp {
			if g, ok := got[n]; !ok || g != sz {
				t.Fatalf("List(%q): %s size %d present=%v, want %d", prefix, n, g, ok, sz)
			}
		}
	}
	some := Name("c", "list7")
	for _, p := range []string{"", "c/", "m/", "r/", "r/0000000000000000000", "vault", "v", "c",
		some[:4] + "/", some[:3], some, some[:30], "x/", "c/zz/"} {
		check(p)
	}
	// Deleted objects disappear from listings.
	if err := s.Delete(ctx, some); err != nil {
		t.Fatal(err)
	}
	delete(want, some)
	check("c/")
}

func keys(m map[string]int64) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

func testListStop(t *testing.T, s backend.Store) {
	for i := 0; i < 5; i++ {
		MustPut(t, s, Name("c", fmt.Sprint("stop", i)), []byte("x"))
	}
	stop := errors.New("enough")
	calls := 0
	err := s.List(ctxT(t), "c/", func(backend.Info) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List returned %v, want fn's error", err)
	}
	if calls != 1 {
		t.Fatalf("List called fn %d times after it returned an error", calls)
	}
}

func testInvalidNames(t *testing.T, s backend.Store) {
	ctx := ctxT(t)
	for _, name := range []string{"", "/abs", "../x", "c/../../x", "a//b", "a/", "./a", "c/ab/.tmp", "a b", "a\x00b", "..", "a/..", `a\b`} {
		if err := s.Put(ctx, name, bytes.NewReader([]byte("x")), 1); err == nil {
			t.Errorf("Put(%q) succeeded", name)
		} else if errors.Is(err, backend.ErrExist) || backend.IsTransient(err) {
			t.Errorf("Put(%q): %v, want a permanent error", name, err)
		}
		if _, err := s.Stat(ctx, name); err == nil {
			t.Errorf("Stat(%q) succeeded", name)
		}
		if _, err := s.Get(ctx, name, 0, -1); err == nil {
			t.Errorf("Get(%q) succeeded", name)
		}
		if err := s.Delete(ctx, name); err == nil {
			t.Errorf("Delete(%q) succeeded", name)
		}
	}
	if err := s.List(ctx, "../", func(backend.Info) error { return nil }); err == nil {
		t.Error(`List("../") succeeded`)
	}
}

// testShortSource: a source that ends early must not leave a (partial) object.
func testShortSource(t *testing.T, s backend.Store) {
	ctx := ctxT(t)
	name := Name("c", "short")
	data := RandBytes(100_000)
	err := s.Put(ctx, name, bytes.NewReader(data[:50_000]), int64(len(data)))
	if err == nil {
		t.Fatal("Put with a source shorter than size succeeded")
	}
	if _, err := s.Stat(ctx, name); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("after a failed Put, Stat = %v, want ErrNotExist", err)
	}
	failing := io.MultiReader(bytes.NewReader(data[:70_000]), errReader{errors.New("disk on fire")})
	if err := s.Put(ctx, name, failing, int64(len(data))); err == nil {
		t.Fatal("Put with a failing source succeeded")
	}
	if _, err := s.Stat(ctx, name); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("after a failed Put, Stat = %v, want ErrNotExist", err)
	}
	MustPut(t, s, name, data)
	if got := mustGet(t, s, name, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("Put after failed attempts stored wrong bytes")
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func testCancel(t *testing.T, s backend.Store) {
	name := Name("c", "cancel")
	MustPut(t, s, name, []byte("present"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	other := Name("c", "cancel-new")
	if err := s.Put(ctx, other, bytes.NewReader([]byte("abc")), 3); err == nil {
		t.Error("Put with a cancelled context succeeded")
	}
	if _, err := s.Stat(ctxT(t), other); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Put with a cancelled context left an object (Stat: %v)", err)
	}
	if _, err := s.Stat(ctx, name); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := ReadAll(ctx, s, name, 0, -1); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v, want context.Canceled", err)
	}
	if err := s.List(ctx, "c/", func(backend.Info) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a cancelled context: %v, want context.Canceled", err)
	}
	if err := s.Delete(ctx, name); err == nil {
		t.Error("Delete with a cancelled context succeeded")
	}
	if got := mustGet(t, s, name, 0, -1); string(got) != "present" {
		t.Error("object damaged by cancelled calls")
	}
}

// cancelReader cancels its context once it has handed out after bytes.
type cancelReader struct {
	r      io.Reader
	after  int
	n      int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n >= c.after {
		c.cancel()
		time.Sleep(50 * time.Millisecond)
	}
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func testCancelDuringPut(t *testing.T, s backend.Store) {
	name := Name("c", "cancel-mid")
	data := RandBytes(4 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &cancelReader{r: bytes.NewReader(data), after: 1 << 20, cancel: cancel}
	if err := s.Put(ctx, name, r, int64(len(data))); err == nil {
		// The store may have read everything before noticing; then the object must be whole.
		if got := mustGet(t, s, name, 0, -1); !bytes.Equal(got, data) {
			t.Fatal("Put cancelled midway reported success and stored wrong bytes")
		}
		return
	}
	if _, err := s.Stat(ctxT(t), name); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Put cancelled midway left an object (Stat: %v)", err)
	}
}

func testParallelDistinct(t *testing.T, s backend.Store) {
	const n = 32
	datas := make([][]byte, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		datas[i] = RandBytes(10_000 + i)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- s.Put(ctxT(t), Name("c", fmt.Sprint("par", i)), bytes.NewReader(datas[i]), int64(len(datas[i])))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("parallel Put: %v", err)
		}
	}
	for i := 0; i < n; i++ {
		if got := mustGet(t, s, Name("c", fmt.Sprint("par", i)), 0, -1); !bytes.Equal(got, datas[i]) {
			t.Fatalf("object %d: wrong bytes", i)
		}
	}
}

// testConcurrentSameName is T19 (docs/security-tests.md): writers race to store one name;
// exactly one wins, every other gets ErrExist, and the stored object is exactly the winner's
// bytes. Each writer offers different bytes so that a mix or a late overwrite would show.
func testConcurrentSameName(t *testing.T, s backend.Store, writers, rounds int) {
	for round := 0; round < rounds; round++ {
		name := Name("c", fmt.Sprint("race", round))
		datas := make([][]byte, writers)
		for i := range datas {
			datas[i] = RandBytes(256<<10 + i)
		}
		start := make(chan struct{})
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for i := 0; i < writers; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				errs[i] = s.Put(ctxT(t), name, bytes.NewReader(datas[i]), int64(len(datas[i])))
			}(i)
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both stored the object", round, winner, i)
				}
				winner = i
			case errors.Is(err, backend.ErrExist):
			default:
				t.Fatalf("round %d: writer %d: %v (want nil or ErrExist)", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer stored the object", round)
		}
		got := mustGet(t, s, name, 0, -1)
		if !bytes.Equal(got, datas[winner]) {
			t.Fatalf("round %d: stored object is not the winner's bytes (%d bytes read)", round, len(got))
		}
	}
}

// patternReader produces size pseudo-random bytes without holding them in memory.
type patternReader struct {
	left int64
	x    uint64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	for i := range b {
		p.x ^= p.x << 13
		p.x ^= p.x >> 7
		p.x ^= p.x << 17
		b[i] = byte(p.x >> 32)
	}
	p.left -= int64(len(b))
	return len(b), nil
}

func testLarge(t *testing.T, s backend.Store, size int64) {
	name := Name("c", "large")
	h := sha256.New()
	if _, err := io.Copy(h, &patternReader{left: size, x: 88172645463325252}); err != nil {
		t.Fatal(err)
	}
	want := h.Sum(nil)
	if err := s.Put(ctxT(t), name, &patternReader{left: size, x: 88172645463325252}, size); err != nil {
		t.Fatalf("Put %d bytes: %v", size, err)
	}
	rc, err := s.Get(ctxT(t), name, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h.Reset()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), want) {
		t.Fatalf("large object read back %d bytes, hash match %v", n, bytes.Equal(h.Sum(nil), want))
	}
	// A range in the middle of the large object.
	off := size/2 + 12345
	tail := mustGet(t, s, name, off, 1000)
	pr := &patternReader{left: size, x: 88172645463325252}
	if _, err := io.CopyN(io.Discard, pr, off); err != nil {
		t.Fatal(err)
	}
	exp := make([]byte, 1000)
	if _, err := io.ReadFull(pr, exp); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tail, exp) {
		t.Fatal("range inside the large object: wrong bytes")
	}
}

// testOverwrite runs when the store implements backend.Overwriter.
func testOverwrite(t *testing.T, s backend.Store) {
	ow, ok := s.(backend.Overwriter)
	if !ok {
		t.Skipf("%T does not implement backend.Overwriter", s)
	}
	ctx := ctxT(t)
	name := Name("c", "overwrite")
	MustPut(t, s, name, []byte("poisoned"))
	good := RandBytes(70_000)
	if err := ow.Overwrite(ctx, name, bytes.NewReader(good), int64(len(good))); err != nil {
		t.Fatalf("Overwrite: %v", err)
	}
	if got := mustGet(t, s, name, 0, -1); !bytes.Equal(got, good) {
		t.Fatal("Overwrite did not replace the object")
	}
	fresh := Name("c", "overwrite-fresh")
	if err := ow.Overwrite(ctx, fresh, bytes.NewReader([]byte("abc")), 3); err != nil {
		t.Fatalf("Overwrite of a missing object: %v", err)
	}
	if got := mustGet(t, s, fresh, 0, -1); string(got) != "abc" {
		t.Fatalf("Overwrite of a missing object read back %q", got)
	}
	if err := ow.Overwrite(ctx, name, bytes.NewReader(good[:10]), int64(len(good))); err == nil {
		t.Fatal("Overwrite with a short source succeeded")
	}
	if got := mustGet(t, s, name, 0, -1); !bytes.Equal(got, good) {
		t.Fatal("a failed Overwrite damaged the object")
	}
}
