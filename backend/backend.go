// Package backend defines the narrow object-store interface every imgfs store implements.
//
// Objects are immutable blobs under flat names such as "c/ab/ab12...", "m/..", "r/000..01".
// Errors are classified by the implementation itself: callers use errors.Is with
// ErrNotExist and ErrExist, and IsTransient/IsPermanent to decide whether to retry.
// IsNetwork is the one test for "the network failed" that every layer uses.
package backend

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
)

// Store is an object store. Implementations must be safe for concurrent use.
type Store interface {
	// Put stores size bytes from r under name atomically: a reader sees either nothing or the
	// whole object. If an object with that name already exists, Put stores nothing and
	// returns an error matching ErrExist (content objects are convergent, so an existing
	// object is a dedup hit; for root pointers it means another writer won the race).
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	// Get returns a reader over the bytes [off, off+length) of the object; length < 0 means
	// up to the end. A missing object gives ErrNotExist.
	Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
	// Stat returns the object's size. A missing object gives ErrNotExist.
	Stat(ctx context.Context, name string) (Info, error)
	// Delete removes the object. Deleting a missing object gives ErrNotExist.
	Delete(ctx context.Context, name string) error
	// List calls fn for every object whose name starts with prefix, in no particular order.
	// An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(Info) error) error
	// Close releases resources held by the store.
	Close() error
}

// Info describes one stored object.
type Info struct {
	Name string
	Size int64
}

var (
	// ErrNotExist: the object does not exist.
	ErrNotExist = errors.New("object does not exist")
	// ErrExist: Put found an object of that name already stored.
	ErrExist = errors.New("object already exists")
)

// transientError marks errors worth retrying (timeouts, 5xx, connection resets).
type transientError struct{ err error }

func (e transientError) Error() string { return e.err.Error() }
func (e transientError) Unwrap() error { return e.err }

// permanentError marks errors that will not go away by retrying (auth, bad request, quota).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Transient wraps err as retryable.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return transientError{err}
}

// Permanent wraps err as not retryable.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsTransient reports whether retrying the operation may succeed.
func IsTransient(err error) bool {
	var t transientError
	return errors.As(err, &t) || errors.Is(err, context.DeadlineExceeded)
}

// IsPermanent reports whether err is classified as permanent (not ErrNotExist/ErrExist,
// which callers handle on their own).
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// networkErrnos are the errnos of a connection that failed or broke.
var networkErrnos = []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.ETIMEDOUT,
	syscall.EPIPE, syscall.EHOSTUNREACH, syscall.ENETUNREACH}

// IsNetwork reports whether err is a failure of the network between imgfs and a store: a
// *net.OpError (dial, read or write on a connection), a name that did not resolve, a closed
// connection, or one of the errnos of a refused, reset, aborted or timed-out connection
// (with or without the wrapping). It says nothing about whether a retry may succeed
// (IsTransient) and does not match a cancelled context. A bare syscall.Errno implements
// net.Error, so "errors.As(err, &netErr)" is not such a test: it matches ENOENT too.
func IsNetwork(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var oe *net.OpError
	var de *net.DNSError
	if errors.As(err, &oe) || errors.As(err, &de) || errors.Is(err, net.ErrClosed) {
		return true
	}
	for _, e := range networkErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
