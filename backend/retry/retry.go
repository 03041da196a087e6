// Package retry decorates a backend.Store with bounded retries, exponential backoff with
// jitter, and a deadline on every request.
//
// Only errors the inner store classifies as transient (backend.IsTransient) are retried, and
// only while the caller's context is alive. ErrExist, ErrNotExist and permanent errors are
// returned at once. Every attempt runs under its own deadline (RequestTimeout, plus
// size/MinRate for Put), so no call hangs on a dead server; a Get body or a List that stops
// making progress for RequestTimeout is cut and resumed (Get from the byte where it stopped:
// objects are immutable, so resuming cannot mix two versions).
//
// A Put is retried only when its source can be rewound (io.Seeker) or when the failed
// attempt consumed none of it. If an attempt's PUT reached the server but its answer was
// lost, the retry gets ErrExist: for content objects that is the dedup hit it looks like;
// a caller that must know whether it was its own write (root pointers) reads the object
// back and compares.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imgfs/imgfs/backend"
)

// Options configures the decorator. Zero fields take the defaults in parentheses.
type Options struct {
	MaxAttempts    int           // attempts per operation, first included (5)
	BaseDelay      time.Duration // backoff before the second attempt (100ms)
	MaxDelay       time.Duration // backoff cap (5s)
	RequestTimeout time.Duration // deadline of one attempt; idle limit of a Get body or List (30s)
	// MinRate extends a Put attempt's deadline by size/MinRate (1 MiB/s).
	MinRate int64
	// MaxParallelPuts bounds the uploads (Put, Overwrite) in flight at once; the others wait
	// (0: no bound).
	MaxParallelPuts int
	// OnRetry, if set, is called before each retry (for a log line or a counter).
	OnRetry func(op, name string, attempt int, err error)
	// sleep is replaced in tests.
	sleep func(ctx context.Context, d time.Duration) error
}

func (o *Options) fill() {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = 100 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 5 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.MinRate <= 0 {
		o.MinRate = 1 << 20
	}
	if o.sleep == nil {
		o.sleep = sleepCtx
	}
}

// Store is the retrying decorator.
type Store struct {
	inner   backend.Store
	o       Options
	retries atomic.Int64
	puts    chan struct{} // upload slots; nil: unbounded
}

var (
	_ backend.Store        = (*Store)(nil)
	_ backend.SHA256Stater = (*Store)(nil)
	_ backend.Overwriter   = (*Store)(nil)
)

// New wraps inner.
func New(inner backend.Store, o Options) *Store {
	o.fill()
	s := &Store{inner: inner, o: o}
	if o.MaxParallelPuts > 0 {
		s.puts = make(chan struct{}, o.MaxParallelPuts)
	}
	return s
}

// Wrap is New for a store of any kind: a local directory store keeps its Path (fs/core reads
// a local store's objects from their files directly) and its Dir. Every store goes through
// this one retry layer (docs/stores.md); its callers do not retry on top.
func Wrap(inner backend.Store, o Options) backend.Store {
	s := New(inner, o)
	if l, ok := inner.(localStore); ok {
		return &LocalStore{Store: s, local: l}
	}
	return s
}

type localStore interface {
	Path(name string) (string, error)
	Dir() string
}

// LocalStore is the decorator around a local directory store.
type LocalStore struct {
	*Store
	local localStore
}

// Path is the inner store's Path: the file that holds object name.
func (s *LocalStore) Path(name string) (string, error) { return s.local.Path(name) }

// Dir is the inner store's directory.
func (s *LocalStore) Dir() string { return s.local.Dir() }

var _ backend.UnsyncedPutter = (*LocalStore)(nil)

// PutUnsynced is the inner store's PutUnsynced with Put's retry policy (Put when the inner
// store has none).
func (s *LocalStore) PutUnsynced(ctx context.Context, name string, r io.Reader, size int64) error {
	u, ok := s.local.(backend.UnsyncedPutter)
	if !ok {
		return s.Store.Put(ctx, name, r, size)
	}
	return s.put(ctx, "put", name, r, size, u.PutUnsynced)
}

// SyncPuts is the inner store's SyncPuts, retried like a Stat (nothing when it has none).
func (s *LocalStore) SyncPuts(ctx context.Context) error {
	u, ok := s.local.(backend.UnsyncedPutter)
	if !ok {
		return nil
	}
	return s.do(ctx, "sync", "", s.o.RequestTimeout, nil, u.SyncPuts)
}

// Inner returns the wrapped store.
func (s *Store) Inner() backend.Store { return s.inner }

// Retries returns how many retries the decorator has made so far.
func (s *Store) Retries() int64 { return s.retries.Load() }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff returns the delay before attempt (2, 3, ...): exponential, capped, with jitter
// drawn from [d/2, d].
func (s *Store) backoff(attempt int) time.Duration {
	d := s.o.BaseDelay << (attempt - 2)
	if d > s.o.MaxDelay || d <= 0 {
		d = s.o.MaxDelay
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// errTimeout is the transient error of an attempt cut by its own deadline.
var errTimeout = errors.New("store request timed out")

// do runs op under the retry policy. op gets a context with the attempt's deadline.
// canRetry, if set, is asked before each retry.
func (s *Store) do(ctx context.Context, opName, name string, timeout time.Duration, canRetry func() bool, op func(ctx context.Context) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		if cerr := ctx.Err(); cerr != nil {
			if err != nil {
				return fmt.Errorf("%w (last error: %v)", cerr, err)
			}
			return cerr
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		err = op(actx)
		timedOut := actx.Err() == context.DeadlineExceeded && ctx.Err() == nil
		cancel()
		if err == nil {
			return nil
		}
		if timedOut {
			err = backend.Transient(fmt.Errorf("%s %s: %w after %v: %v", opName, name, errTimeout, timeout, err))
		}
		if ctx.Err() != nil || !backend.IsTransient(err) || errors.Is(err, backend.ErrExist) || errors.Is(err, backend.ErrNotExist) {
			return err
		}
		if attempt >= s.o.MaxAttempts || (canRetry != nil && !canRetry()) {
			return fmt.Errorf("%s %s: giving up after %d attempts: %w", opName, name, attempt, err)
		}
		if s.o.OnRetry != nil {
			s.o.OnRetry(opName, name, attempt, err)
		}
		s.retries.Add(1)
		if serr := s.o.sleep(ctx, s.backoff(attempt+1)); serr != nil {
			return fmt.Errorf("%w (last error: %v)", serr, err)
		}
	}
}

// Put stores the object, retrying transient failures when the source can be replayed.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	return s.put(ctx, "put", name, r, size, s.inner.Put)
}

// Overwrite forwards to the inner store's Overwrite with the same retry policy.
func (s *Store) Overwrite(ctx context.Context, name string, r io.Reader, size int64) error {
	ow, ok := s.inner.(backend.Overwriter)
	if !ok {
		return backend.Permanent(fmt.Errorf("overwrite %s: %T cannot overwrite objects", name, s.inner))
	}
	return s.put(ctx, "overwrite", name, r, size, ow.Overwrite)
}

// PutIfMatch forwards to the inner store once (no retry: the store probe wants the store's
// own answer); errors.ErrUnsupported when the inner store has no ETags.
func (s *Store) PutIfMatch(ctx context.Context, name string, r io.Reader, size int64, etag string) error {
	im, ok := s.inner.(backend.IfMatchPutter)
	if !ok {
		return errors.ErrUnsupported
	}
	return im.PutIfMatch(ctx, name, r, size, etag)
}

func (s *Store) put(ctx context.Context, opName, name string, r io.Reader, size int64, fn func(context.Context, string, io.Reader, int64) error) error {
	if s.puts != nil {
		select {
		case s.puts <- struct{}{}:
			defer func() { <-s.puts }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	timeout := s.o.RequestTimeout
	if size > 0 {
		timeout += time.Duration(float64(size) / float64(s.o.MinRate) * float64(time.Second))
	}
	seeker, _ := r.(io.Seeker)
	var start int64
	if seeker != nil {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			seeker = nil
		}
	}
	cr := &countReader{r: r}
	canRetry := func() bool {
		if seeker != nil {
			_, err := seeker.Seek(start, io.SeekStart)
			if err == nil {
				cr.n = 0
			}
			return err == nil
		}
		return cr.n == 0
	}
	return s.do(ctx, opName, name, timeout, canRetry, func(actx context.Context) error {
		if seeker != nil {
			// Hand the seekable source itself on: the inner store may want to read it twice
			// (the S3 store hashes before sending).
			return fn(actx, name, r, size)
		}
		return fn(actx, name, cr, size)
	})
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Stat returns the object's Info.
func (s *Store) Stat(ctx context.Context, name string) (backend.Info, error) {
	var info backend.Info
	err := s.do(ctx, "stat", name, s.o.RequestTimeout, nil, func(actx context.Context) error {
		var err error
		info, err = s.inner.Stat(actx, name)
		return err
	})
	return info, err
}

// StatSHA256 forwards to the inner store's StatSHA256, or to Stat with a nil sum.
func (s *Store) StatSHA256(ctx context.Context, name string) (backend.Info, []byte, error) {
	ss, ok := s.inner.(backend.SHA256Stater)
	if !ok {
		info, err := s.Stat(ctx, name)
		return info, nil, err
	}
	var info backend.Info
	var sum []byte
	err := s.do(ctx, "stat", name, s.o.RequestTimeout, nil, func(actx context.Context) error {
		var err error
		info, sum, err = ss.StatSHA256(actx, name)
		return err
	})
	return info, sum, err
}

// Delete removes the object. A retry after a lost answer may report ErrNotExist for an
// object the first attempt deleted.
func (s *Store) Delete(ctx context.Context, name string) error {
	return s.do(ctx, "delete", name, s.o.RequestTimeout, nil, func(actx context.Context) error {
		return s.inner.Delete(actx, name)
	})
}

// List lists by prefix. A listing that fails transiently is restarted; names already
// passed to fn are not passed again.
func (s *Store) List(ctx context.Context, prefix string, fn func(backend.Info) error) error {
	var seen map[string]struct{}
	var fnErr error
	// The listing's deadline is an idle limit: every object listed moves it forward.
	err := s.do(ctx, "list", prefix, 1<<62, nil, func(actx context.Context) error {
		lctx, cancel := context.WithCancelCause(actx)
		defer cancel(nil)
		w := newWatchdog(s.o.RequestTimeout, func() { cancel(errTimeout) })
		w.arm()
		defer w.disarm()
		err := s.inner.List(lctx, prefix, func(info backend.Info) error {
			w.disarm() // fn's own time does not count
			defer w.arm()
			if seen != nil {
				if _, dup := seen[info.Name]; dup {
					return nil
				}
			} else {
				seen = map[string]struct{}{}
			}
			seen[info.Name] = struct{}{}
			if e := fn(info); e != nil {
				fnErr = e
				return e
			}
			return nil
		})
		if fnErr != nil {
			return errFnStop // not retried, whatever fn's error is
		}
		if err != nil && context.Cause(lctx) == errTimeout && actx.Err() == nil {
			return backend.Transient(fmt.Errorf("list %s: no progress for %v: %w", prefix, s.o.RequestTimeout, errTimeout))
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

var errFnStop = errors.New("listing stopped by its callback")

// Close closes the inner store.
func (s *Store) Close() error { return s.inner.Close() }

// Get returns a reader over [off, off+length). The first response is retried like any
// request; a body that fails transiently or stalls for RequestTimeout is resumed with a new
// Get from the first byte not yet delivered, within the same attempt budget.
func (s *Store) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	r := &reader{s: s, ctx: ctx, name: name, off: off, length: length}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

type reader struct {
	s        *Store
	ctx      context.Context
	name     string
	off      int64 // next byte to deliver
	length   int64 // bytes still wanted; < 0: to the end
	attempts int   // attempts used by resumptions

	mu     sync.Mutex
	rc     io.ReadCloser
	bctx   context.Context
	cancel context.CancelCauseFunc
	w      *watchdog
	closed bool
}

// open (re)opens the body at r.off under the retry policy.
func (r *reader) open() error {
	return r.s.do(r.ctx, "get", r.name, r.s.o.RequestTimeout, nil, func(actx context.Context) error {
		// The body outlives this attempt's context: give it its own, cut by the attempt's
		// deadline until the response arrives, then by the watchdog while a Read waits.
		bctx, cancel := context.WithCancelCause(r.ctx)
		stop := context.AfterFunc(actx, func() {
			if actx.Err() == context.DeadlineExceeded {
				cancel(errTimeout)
			}
		})
		rc, err := r.s.inner.Get(bctx, r.name, r.off, r.length)
		stop()
		if err != nil {
			cancel(nil)
			return err
		}
		r.rc, r.bctx, r.cancel = rc, bctx, cancel
		r.w = newWatchdog(r.s.o.RequestTimeout, func() { cancel(errTimeout) })
		return nil
	})
}

func (r *reader) release() error {
	var err error
	if r.rc != nil {
		err = r.rc.Close()
		r.w.disarm()
		r.cancel(nil)
		r.rc = nil
	}
	return err
}

func (r *reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errors.New("read of a closed store reader")
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.length == 0 {
		return 0, io.EOF
	}
	if r.length > 0 && int64(len(p)) > r.length {
		p = p[:r.length]
	}
	for {
		if r.rc == nil {
			if err := r.open(); err != nil {
				return 0, err
			}
		}
		r.w.arm()
		n, err := r.rc.Read(p)
		r.w.disarm()
		r.off += int64(n)
		if r.length > 0 {
			r.length -= int64(n)
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		stalled := context.Cause(r.bctx) == errTimeout
		r.release()
		if r.ctx.Err() != nil {
			return n, r.ctx.Err()
		}
		if stalled {
			err = backend.Transient(fmt.Errorf("get %s: body stalled for %v: %w", r.name, r.s.o.RequestTimeout, errTimeout))
		}
		if !backend.IsTransient(err) {
			return n, err
		}
		r.attempts++
		if r.attempts >= r.s.o.MaxAttempts {
			return n, fmt.Errorf("get %s: giving up after %d resumptions: %w", r.name, r.attempts, err)
		}
		if r.s.o.OnRetry != nil {
			r.s.o.OnRetry("get-body", r.name, r.attempts, err)
		}
		r.s.retries.Add(1)
		if n > 0 {
			return n, nil // deliver what arrived; the next Read reopens at r.off
		}
		if serr := r.s.o.sleep(r.ctx, r.s.backoff(r.attempts+1)); serr != nil {
			return 0, serr
		}
	}
}

func (r *reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return r.release()
}

// watchdog calls fire when it stays armed for d.
type watchdog struct {
	d time.Duration
	t *time.Timer
}

func newWatchdog(d time.Duration, fire func()) *watchdog {
	t := time.AfterFunc(time.Hour, fire)
	t.Stop()
	return &watchdog{d: d, t: t}
}

func (w *watchdog) arm()    { w.t.Reset(w.d) }
func (w *watchdog) disarm() { w.t.Stop() }
