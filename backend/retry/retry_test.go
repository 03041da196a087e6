package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/faulty"
	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/backend/storetest"
)

// fake is a unit-test double: a real local store whose calls can be scripted to fail.
type fake struct {
	backend.Store
	mu    sync.Mutex
	calls map[string]int
	// fail, if set, returns the error for call n (1-based) of op, or nil to run it.
	fail func(op string, n int) error
	// body, if set, wraps Get's reader.
	body func(n int, rc io.ReadCloser, ctx context.Context) io.ReadCloser
	// block makes op wait for its context instead of running.
	block func(op string, n int) bool
	// putRead makes a failing Put consume this many bytes first.
	putRead int
}

func newFake(t *testing.T) *fake {
	s, err := local.Open(filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	return &fake{Store: s, calls: map[string]int{}}
}

func (f *fake) enter(ctx context.Context, op string) (int, error) {
	f.mu.Lock()
	f.calls[op]++
	n := f.calls[op]
	f.mu.Unlock()
	if f.block != nil && f.block(op, n) {
		<-ctx.Done()
		return n, ctx.Err()
	}
	if f.fail != nil {
		if err := f.fail(op, n); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (f *fake) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fake) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if _, err := f.enter(ctx, "put"); err != nil {
		if f.putRead > 0 {
			io.CopyN(io.Discard, r, int64(f.putRead))
		}
		return err
	}
	return f.Store.Put(ctx, name, r, size)
}

func (f *fake) Stat(ctx context.Context, name string) (backend.Info, error) {
	if _, err := f.enter(ctx, "stat"); err != nil {
		return backend.Info{}, err
	}
	return f.Store.Stat(ctx, name)
}

func (f *fake) Delete(ctx context.Context, name string) error {
	if _, err := f.enter(ctx, "delete"); err != nil {
		return err
	}
	return f.Store.Delete(ctx, name)
}

func (f *fake) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	n, err := f.enter(ctx, "get")
	if err != nil {
		return nil, err
	}
	rc, err := f.Store.Get(ctx, name, off, length)
	if err != nil || f.body == nil {
		return rc, err
	}
	return f.body(n, rc, ctx), nil
}

func (f *fake) List(ctx context.Context, prefix string, fn func(backend.Info) error) error {
	n, err := f.enter(ctx, "list")
	if err != nil {
		return err
	}
	seen := 0
	return f.Store.List(ctx, prefix, func(i backend.Info) error {
		seen++
		if n == 1 && seen == 3 {
			return backend.Transient(errors.New("listing connection reset"))
		}
		return fn(i)
	})
}

var errFlaky = backend.Transient(errors.New("503 SlowDown"))

func fastOpts() Options {
	return Options{MaxAttempts: 4, RequestTimeout: 200 * time.Millisecond, sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}
}

// The decorator passes the conformance suite itself (with no faults).
func TestConformance(t *testing.T) {
	storetest.RunOptions(t, func(t *testing.T) backend.Store {
		return New(newFake(t).Store, Options{})
	}, storetest.Options{LargeSize: 4 << 20, Rounds: 2})
}

func TestRetriesTransient(t *testing.T) {
	f := newFake(t)
	f.fail = func(op string, n int) error {
		if n < 3 {
			return errFlaky
		}
		return nil
	}
	var logged []string
	o := fastOpts()
	o.OnRetry = func(op, name string, attempt int, err error) { logged = append(logged, fmt.Sprint(op, attempt)) }
	s := New(f, o)
	ctx := context.Background()
	name := storetest.Name("c", "x")
	data := storetest.RandBytes(1000)
	if err := s.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if _, err := s.Stat(ctx, name); err != nil {
		t.Fatalf("Stat: %v", err)
	}
	got, err := storetest.ReadAll(ctx, s, name, 0, -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get: %v", err)
	}
	if err := s.Delete(ctx, name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, op := range []string{"put", "stat", "get", "delete"} {
		if c := f.count(op); c != 3 {
			t.Errorf("%s: %d calls, want 3", op, c)
		}
	}
	if s.Retries() != 8 || len(logged) != 8 {
		t.Errorf("Retries() = %d, OnRetry calls %d, want 8", s.Retries(), len(logged))
	}
}

func TestNoRetry(t *testing.T) {
	ctx := context.Background()
	name := storetest.Name("c", "y")
	for _, tc := range []struct {
		err  error
		want func(error) bool
	}{
		{backend.Permanent(errors.New("403 AccessDenied")), backend.IsPermanent},
		{fmt.Errorf("x: %w", backend.ErrExist), func(e error) bool { return errors.Is(e, backend.ErrExist) }},
		{fmt.Errorf("x: %w", backend.ErrNotExist), func(e error) bool { return errors.Is(e, backend.ErrNotExist) }},
		{errors.New("unclassified"), func(e error) bool { return e != nil }},
	} {
		f := newFake(t)
		f.fail = func(string, int) error { return tc.err }
		s := New(f, fastOpts())
		err := s.Put(ctx, name, bytes.NewReader([]byte("a")), 1)
		if !tc.want(err) || f.count("put") != 1 {
			t.Errorf("%v: got %v after %d calls, want it unchanged after 1", tc.err, err, f.count("put"))
		}
		_, err = s.Stat(ctx, name)
		if !tc.want(err) || f.count("stat") != 1 {
			t.Errorf("stat %v: got %v after %d calls", tc.err, err, f.count("stat"))
		}
	}
}

// The store's own ErrExist is never retried, even after a transient failure.
func TestPutExistNotRetried(t *testing.T) {
	f := newFake(t)
	name := storetest.Name("c", "e")
	storetest.MustPut(t, f.Store, name, []byte("old"))
	s := New(f, fastOpts())
	err := s.Put(context.Background(), name, bytes.NewReader([]byte("new")), 3)
	if !errors.Is(err, backend.ErrExist) || f.count("put") != 1 {
		t.Fatalf("got %v after %d calls", err, f.count("put"))
	}
}

func TestGivesUp(t *testing.T) {
	f := newFake(t)
	f.fail = func(string, int) error { return errFlaky }
	s := New(f, fastOpts())
	_, err := s.Stat(context.Background(), storetest.Name("c", "z"))
	if err == nil || !backend.IsTransient(err) {
		t.Fatalf("got %v, want a transient error", err)
	}
	if f.count("stat") != 4 {
		t.Fatalf("%d attempts, want 4", f.count("stat"))
	}
}

// Every attempt has a deadline: a hung server costs MaxAttempts*RequestTimeout, not forever.
func TestRequestDeadline(t *testing.T) {
	f := newFake(t)
	f.block = func(op string, n int) bool { return true }
	s := New(f, fastOpts())
	start := time.Now()
	_, err := s.Stat(context.Background(), storetest.Name("c", "hang"))
	el := time.Since(start)
	if err == nil || !backend.IsTransient(err) || !errors.Is(err, errTimeout) {
		t.Fatalf("got %v, want a transient timeout", err)
	}
	if f.count("stat") != 4 || el > 2*time.Second {
		t.Fatalf("%d attempts in %v", f.count("stat"), el)
	}
	// The Put deadline grows with the size.
	f.block = func(op string, n int) bool { return n == 1 }
	data := storetest.RandBytes(100)
	if err := s.Put(context.Background(), storetest.Name("c", "hang"), bytes.NewReader(data), 100); err != nil {
		t.Fatalf("Put after one hung attempt: %v", err)
	}
}

func TestCallerCancelStops(t *testing.T) {
	f := newFake(t)
	f.fail = func(string, int) error { return errFlaky }
	o := fastOpts()
	o.sleep = sleepCtx
	o.BaseDelay = time.Hour
	o.MaxDelay = time.Hour
	s := New(f, o)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Stat(ctx, storetest.Name("c", "c"))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
	if f.count("stat") != 1 {
		t.Fatalf("%d attempts", f.count("stat"))
	}
}

func TestPutRewinds(t *testing.T) {
	f := newFake(t)
	f.putRead = 500
	f.fail = func(op string, n int) error {
		if n == 1 {
			return errFlaky
		}
		return nil
	}
	s := New(f, fastOpts())
	data := storetest.RandBytes(1000)
	name := storetest.Name("c", "rw")
	// A seekable source is rewound to where it started (not to 0).
	src := bytes.NewReader(append([]byte("prefix"), data...))
	src.Seek(6, io.SeekStart)
	if err := s.Put(context.Background(), name, src, 1000); err != nil {
		t.Fatal(err)
	}
	got, _ := storetest.ReadAll(context.Background(), f.Store, name, 0, -1)
	if !bytes.Equal(got, data) {
		t.Fatal("retried Put stored wrong bytes")
	}
	// A consumed one-shot source is not retried.
	f2 := newFake(t)
	f2.putRead = 500
	f2.fail = f.fail
	s2 := New(f2, fastOpts())
	err := s2.Put(context.Background(), name, io.MultiReader(bytes.NewReader(data)), 1000)
	if err == nil || f2.count("put") != 1 {
		t.Fatalf("one-shot source: %v after %d calls", err, f2.count("put"))
	}
	// An untouched one-shot source is.
	f3 := newFake(t)
	f3.fail = f.fail
	s3 := New(f3, fastOpts())
	if err := s3.Put(context.Background(), name, io.MultiReader(bytes.NewReader(data)), 1000); err != nil || f3.count("put") != 2 {
		t.Fatalf("untouched one-shot source: %v after %d calls", err, f3.count("put"))
	}
}

// breakingBody fails (or stalls) after after bytes.
type breakingBody struct {
	rc    io.ReadCloser
	ctx   context.Context
	after int
	n     int
	stall bool
}

func (b *breakingBody) Read(p []byte) (int, error) {
	if b.n >= b.after {
		if b.stall {
			<-b.ctx.Done()
			return 0, b.ctx.Err()
		}
		return 0, backend.Transient(io.ErrUnexpectedEOF)
	}
	if len(p) > b.after-b.n {
		p = p[:b.after-b.n]
	}
	n, err := b.rc.Read(p)
	b.n += n
	return n, err
}

func (b *breakingBody) Close() error { return b.rc.Close() }

func TestGetResumes(t *testing.T) {
	for _, stall := range []bool{false, true} {
		f := newFake(t)
		data := storetest.RandBytes(300_000)
		name := storetest.Name("c", "g")
		storetest.MustPut(t, f.Store, name, data)
		f.body = func(n int, rc io.ReadCloser, ctx context.Context) io.ReadCloser {
			if n <= 2 {
				return &breakingBody{rc: rc, ctx: ctx, after: 70_000, stall: stall}
			}
			return rc
		}
		s := New(f, fastOpts())
		for _, c := range []struct{ off, length int64 }{{0, -1}, {1000, 200_000}} {
			f.mu.Lock()
			f.calls["get"] = 0
			f.mu.Unlock()
			got, err := storetest.ReadAll(context.Background(), s, name, c.off, c.length)
			end := int64(len(data))
			if c.length >= 0 {
				end = c.off + c.length
			}
			if err != nil || !bytes.Equal(got, data[c.off:end]) {
				t.Fatalf("stall=%v %v: %v, %d bytes", stall, c, err, len(got))
			}
			if f.count("get") != 3 {
				t.Fatalf("stall=%v: %d Gets, want 3", stall, f.count("get"))
			}
		}
	}
}

// A body that keeps breaking is given up on with an error, never short data without one.
func TestGetBodyGivesUp(t *testing.T) {
	f := newFake(t)
	data := storetest.RandBytes(100_000)
	name := storetest.Name("c", "h")
	storetest.MustPut(t, f.Store, name, data)
	f.body = func(n int, rc io.ReadCloser, ctx context.Context) io.ReadCloser {
		return &breakingBody{rc: rc, ctx: ctx, after: 1000}
	}
	s := New(f, fastOpts())
	got, err := storetest.ReadAll(context.Background(), s, name, 0, -1)
	if err == nil {
		t.Fatal("no error from a body that keeps breaking")
	}
	if !bytes.Equal(got, data[:len(got)]) {
		t.Fatal("wrong bytes before the error")
	}
}

func TestListRestartsWithoutDuplicates(t *testing.T) {
	f := newFake(t)
	for i := 0; i < 10; i++ {
		storetest.MustPut(t, f.Store, storetest.Name("c", fmt.Sprint(i)), []byte("x"))
	}
	s := New(f, fastOpts())
	seen := map[string]int{}
	err := s.List(context.Background(), "c/", func(i backend.Info) error { seen[i.Name]++; return nil })
	if err != nil || len(seen) != 10 || f.count("list") != 2 {
		t.Fatalf("err %v, %d names, %d calls", err, len(seen), f.count("list"))
	}
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("%s listed %d times", n, c)
		}
	}
	// fn's error stops the listing, even if it looks transient.
	calls := 0
	err = s.List(context.Background(), "c/", func(backend.Info) error { calls++; return errFlaky })
	if !errors.Is(err, errFlaky) || calls != 1 {
		t.Fatalf("fn error: %v after %d calls", err, calls)
	}
}

func TestBackoff(t *testing.T) {
	s := New(newFake(t), Options{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second})
	for attempt, max := range map[int]time.Duration{2: 100 * time.Millisecond, 3: 200 * time.Millisecond, 4: 400 * time.Millisecond, 6: time.Second, 60: time.Second} {
		for i := 0; i < 50; i++ {
			d := s.backoff(attempt)
			if d < max/2 || d > max {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", attempt, d, max/2, max)
			}
		}
	}
}

func TestForwardsOptional(t *testing.T) {
	f := newFake(t)
	s := New(f, fastOpts())
	name := storetest.Name("c", "o")
	storetest.MustPut(t, s, name, []byte("bad"))
	if err := s.Overwrite(context.Background(), name, bytes.NewReader([]byte("good")), 4); err == nil {
		t.Fatal("Overwrite through a store without it succeeded") // fake hides local's Overwrite
	}
	ls := New(f.Store, fastOpts())
	if err := ls.Overwrite(context.Background(), name, bytes.NewReader([]byte("good")), 4); err != nil {
		t.Fatal(err)
	}
	info, sum, err := ls.StatSHA256(context.Background(), name)
	if err != nil || info.Size != 4 || sum != nil {
		t.Fatalf("StatSHA256: %v %v %v", info, sum, err)
	}
}

// blockingPut counts concurrent Puts and holds each until released.
type blockingPut struct {
	*fake
	cur, max atomic.Int32
	release  chan struct{}
}

func (b *blockingPut) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	n := b.cur.Add(1)
	for {
		m := b.max.Load()
		if n <= m || b.max.CompareAndSwap(m, n) {
			break
		}
	}
	<-b.release
	b.cur.Add(-1)
	return b.fake.Put(ctx, name, r, size)
}

func TestMaxParallelPuts(t *testing.T) {
	b := &blockingPut{fake: newFake(t), release: make(chan struct{})}
	s := New(b, Options{MaxParallelPuts: 3})
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := s.Put(context.Background(), storetest.Name("c", fmt.Sprint("p", i)), bytes.NewReader([]byte("x")), 1); err != nil {
				t.Error(err)
			}
		}(i)
	}
	time.Sleep(100 * time.Millisecond)
	close(b.release)
	wg.Wait()
	if m := b.max.Load(); m != 3 {
		t.Fatalf("max %d Puts in flight, want 3", m)
	}
}

// Wrap keeps a local directory store's Path and Dir (fs/core reads its files directly) and
// gives other stores none.
func TestWrapKeepsLocalPath(t *testing.T) {
	dir := t.TempDir()
	ls, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := Wrap(ls, Options{})
	p, ok := w.(interface {
		Path(string) (string, error)
		Dir() string
	})
	if !ok || p.Dir() != dir {
		t.Fatalf("Wrap(local) = %T: no Path/Dir", w)
	}
	want, _ := ls.Path("c/x")
	if got, err := p.Path("c/x"); err != nil || got != want {
		t.Fatalf("Path = %q, %v; want %q", got, err, want)
	}
	if _, ok := Wrap(faulty.New(ls), Options{}).(interface{ Path(string) (string, error) }); ok {
		t.Fatal("Wrap of a store without Path has one")
	}
}
