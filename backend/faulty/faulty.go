// Package faulty injects store faults for tests (T38 in docs/security-tests.md).
//
// Store is an in-process decorator for unit tests of the layers above the store: it fails the
// Nth call, adds latency, acknowledges truncated writes, lies on HEAD (Stat), loses
// acknowledgements, cuts or corrupts read bodies. Proxy (proxy.go) is an HTTP reverse proxy
// between an S3 client and a real S3 server that fails, delays, truncates or resets a share
// of the requests, for integration tests against versitygw.
package faulty

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/imgfs/imgfs/backend"
)

// Op names a Store method.
type Op string

// The operations a Fault can match.
const (
	OpAny    Op = ""
	OpPut    Op = "put"
	OpGet    Op = "get"
	OpStat   Op = "stat"
	OpDelete Op = "delete"
	OpList   Op = "list"
)

// Kind is what a fault does.
type Kind int

const (
	// Error: the call fails with Fault.Err (default: a transient "503 SlowDown") without
	// reaching the inner store.
	Error Kind = iota
	// Latency: the call waits Fault.Latency (or until its context ends) first.
	Latency
	// Truncate: Put stores only the first Fault.N bytes and reports success (a store that
	// acknowledged a damaged body); Get delivers only the first Fault.N bytes, then EOF.
	Truncate
	// CutBody: Get's body fails with a transient error after Fault.N bytes.
	CutBody
	// Corrupt: Get's body has one bit flipped at offset Fault.N of what it delivers.
	Corrupt
	// StatExists: Stat says the object exists (size Fault.N) whether or not it does.
	StatExists
	// StatAbsent: Stat says ErrNotExist whether or not the object exists.
	StatAbsent
	// LostAck: the call runs on the inner store, then fails with a transient error as if
	// the answer had been lost (a retry of a Put then meets ErrExist).
	LostAck
)

// ErrInjected is the default injected error: transient, like a 503 SlowDown.
var ErrInjected = backend.Transient(errors.New("injected fault: 503 SlowDown"))

// Fault is one rule. A call matches when Op and NamePrefix match; it then fires if it is the
// Nth matching call (Nth > 0), or with probability Prob (Prob > 0), or always (both zero),
// at most Times times in all (0: no limit).
type Fault struct {
	Op         Op
	NamePrefix string
	Nth        int
	Prob       float64
	Times      int
	Kind       Kind
	Err        error
	Latency    time.Duration
	N          int64

	seen, fired int
}

// Store is the fault-injecting decorator.
type Store struct {
	inner  backend.Store
	mu     sync.Mutex
	faults []*Fault
	calls  map[Op]int
	fired  map[Kind]int
	rnd    *rand.Rand
}

var _ backend.Store = (*Store)(nil)

// New wraps inner with no faults.
func New(inner backend.Store) *Store {
	return &Store{inner: inner, calls: map[Op]int{}, fired: map[Kind]int{}, rnd: rand.New(rand.NewPCG(1, 2))}
}

// Seed makes probabilistic faults repeatable.
func (s *Store) Seed(a, b uint64) {
	s.mu.Lock()
	s.rnd = rand.New(rand.NewPCG(a, b))
	s.mu.Unlock()
}

// Add adds a fault rule.
func (s *Store) Add(f Fault) {
	s.mu.Lock()
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
}

// Clear removes every rule (the store "recovers").
func (s *Store) Clear() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// Calls returns how many calls of op (OpAny: all) the store has seen.
func (s *Store) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op == OpAny {
		n := 0
		for _, c := range s.calls {
			n += c
		}
		return n
	}
	return s.calls[op]
}

// Fired returns how often faults of kind k fired.
func (s *Store) Fired(k Kind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fired[k]
}

// Inner returns the wrapped store.
func (s *Store) Inner() backend.Store { return s.inner }

// match returns the faults that fire for this call (at most one of each kind).
func (s *Store) match(op Op, name string) []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	var out []Fault
	for _, f := range s.faults {
		if f.Op != OpAny && f.Op != op || !strings.HasPrefix(name, f.NamePrefix) {
			continue
		}
		f.seen++
		if f.Times > 0 && f.fired >= f.Times {
			continue
		}
		fire := false
		switch {
		case f.Nth > 0:
			fire = f.seen == f.Nth
		case f.Prob > 0:
			fire = s.rnd.Float64() < f.Prob
		default:
			fire = true
		}
		if fire {
			f.fired++
			s.fired[f.Kind]++
			out = append(out, *f)
		}
	}
	return out
}

// pre applies latency and error faults; it returns a non-nil error to stop the call.
func pre(ctx context.Context, fs []Fault) error {
	for _, f := range fs {
		switch f.Kind {
		case Latency:
			t := time.NewTimer(f.Latency)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		case Error:
			if f.Err != nil {
				return f.Err
			}
			return ErrInjected
		}
	}
	return nil
}

func has(fs []Fault, k Kind) (Fault, bool) {
	for _, f := range fs {
		if f.Kind == k {
			return f, true
		}
	}
	return Fault{}, false
}

func lostAck(op Op, name string) error {
	return backend.Transient(fmt.Errorf("injected fault: %s %s: answer lost (connection reset)", op, name))
}

// Put stores the object (or not, or a truncated one, per the faults).
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	fs := s.match(OpPut, name)
	if err := pre(ctx, fs); err != nil {
		return err
	}
	if f, ok := has(fs, Truncate); ok && f.N < size {
		buf := make([]byte, f.N)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, io.LimitReader(r, size-f.N)); err != nil {
			return err
		}
		return s.inner.Put(ctx, name, bytes.NewReader(buf), f.N)
	}
	err := s.inner.Put(ctx, name, r, size)
	if _, ok := has(fs, LostAck); ok && err == nil {
		return lostAck(OpPut, name)
	}
	return err
}

// Get returns the object's bytes (or a cut, truncated or corrupted body, per the faults).
func (s *Store) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	fs := s.match(OpGet, name)
	if err := pre(ctx, fs); err != nil {
		return nil, err
	}
	rc, err := s.inner.Get(ctx, name, off, length)
	if err != nil {
		return nil, err
	}
	if _, ok := has(fs, LostAck); ok {
		rc.Close()
		return nil, lostAck(OpGet, name)
	}
	b := &body{rc: rc, name: name, limit: -1, cut: -1, flip: -1}
	if f, ok := has(fs, Truncate); ok {
		b.limit = f.N
	}
	if f, ok := has(fs, CutBody); ok {
		b.cut = f.N
	}
	if f, ok := has(fs, Corrupt); ok {
		b.flip = f.N
	}
	return b, nil
}

type body struct {
	rc               io.ReadCloser
	name             string
	n                int64
	limit, cut, flip int64
}

func (b *body) Read(p []byte) (int, error) {
	if b.limit >= 0 && b.n >= b.limit {
		return 0, io.EOF
	}
	if b.cut >= 0 && b.n >= b.cut {
		return 0, backend.Transient(fmt.Errorf("injected fault: get %s: connection reset after %d bytes", b.name, b.n))
	}
	max := int64(len(p))
	if b.limit >= 0 && b.limit-b.n < max {
		max = b.limit - b.n
	}
	if b.cut >= 0 && b.cut-b.n < max {
		max = b.cut - b.n
	}
	n, err := b.rc.Read(p[:max])
	if b.flip >= b.n && b.flip < b.n+int64(n) {
		p[b.flip-b.n] ^= 0x01
	}
	b.n += int64(n)
	return n, err
}

func (b *body) Close() error { return b.rc.Close() }

// Stat returns the object's Info (or a lie, per the faults).
func (s *Store) Stat(ctx context.Context, name string) (backend.Info, error) {
	fs := s.match(OpStat, name)
	if err := pre(ctx, fs); err != nil {
		return backend.Info{}, err
	}
	if f, ok := has(fs, StatExists); ok {
		return backend.Info{Name: name, Size: f.N}, nil
	}
	if _, ok := has(fs, StatAbsent); ok {
		return backend.Info{}, fmt.Errorf("injected fault: stat %s: %w", name, backend.ErrNotExist)
	}
	info, err := s.inner.Stat(ctx, name)
	if _, ok := has(fs, LostAck); ok && err == nil {
		return backend.Info{}, lostAck(OpStat, name)
	}
	return info, err
}

// Delete removes the object (per the faults).
func (s *Store) Delete(ctx context.Context, name string) error {
	fs := s.match(OpDelete, name)
	if err := pre(ctx, fs); err != nil {
		return err
	}
	err := s.inner.Delete(ctx, name)
	if _, ok := has(fs, LostAck); ok && err == nil {
		return lostAck(OpDelete, name)
	}
	return err
}

// List lists (per the faults; the name matched against NamePrefix is the list prefix).
func (s *Store) List(ctx context.Context, prefix string, fn func(backend.Info) error) error {
	fs := s.match(OpList, prefix)
	if err := pre(ctx, fs); err != nil {
		return err
	}
	return s.inner.List(ctx, prefix, fn)
}

// Close closes the inner store.
func (s *Store) Close() error { return s.inner.Close() }
