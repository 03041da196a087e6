// Package memstore is an in-memory backend.Store for unit tests of the crypto layer.
// It follows the backend contract (create-only Put, ErrExist, ErrNotExist) and lets tests
// reach in to corrupt, swap or plant objects as a malicious store would.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/imgfs/imgfs/backend"
)

// Store keeps objects in a map.
type Store struct {
	mu   sync.Mutex
	objs map[string][]byte
	// Puts counts successful Put calls.
	Puts int
}

// New returns an empty store.
func New() *Store { return &Store{objs: map[string][]byte{}} }

var _ backend.Store = (*Store)(nil)

func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	b, err := io.ReadAll(io.LimitReader(r, size+1))
	if err != nil {
		return err
	}
	if int64(len(b)) != size {
		return fmt.Errorf("memstore: put %s: got %d bytes, want %d", name, len(b), size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objs[name]; ok {
		return fmt.Errorf("memstore: put %s: %w", name, backend.ErrExist)
	}
	s.objs[name] = b
	s.Puts++
	return nil
}

func (s *Store) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	s.mu.Lock()
	b, ok := s.objs[name]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("memstore: get %s: %w", name, backend.ErrNotExist)
	}
	if off < 0 || off > int64(len(b)) {
		return nil, fmt.Errorf("memstore: get %s: offset out of range", name)
	}
	b = b[off:]
	if length >= 0 && length < int64(len(b)) {
		b = b[:length]
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (s *Store) Stat(ctx context.Context, name string) (backend.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objs[name]
	if !ok {
		return backend.Info{}, fmt.Errorf("memstore: stat %s: %w", name, backend.ErrNotExist)
	}
	return backend.Info{Name: name, Size: int64(len(b))}, nil
}

func (s *Store) Delete(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objs[name]; !ok {
		return fmt.Errorf("memstore: delete %s: %w", name, backend.ErrNotExist)
	}
	delete(s.objs, name)
	return nil
}

func (s *Store) List(ctx context.Context, prefix string, fn func(backend.Info) error) error {
	for _, n := range s.Names(prefix) {
		s.mu.Lock()
		b, ok := s.objs[n]
		s.mu.Unlock()
		if !ok {
			continue
		}
		if err := fn(backend.Info{Name: n, Size: int64(len(b))}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) Close() error { return nil }

// Names returns the sorted names with prefix.
func (s *Store) Names(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.objs {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Raw returns a copy of an object's bytes (nil if absent).
func (s *Store) Raw(name string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.objs[name])
}

// SetRaw replaces or plants an object, bypassing create-only semantics (a hostile store).
func (s *Store) SetRaw(name string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objs[name] = bytes.Clone(b)
}
