package core

import (
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/imgfs/imgfs/fs/core/rootsync"
)

// Sentinel errors for conditions callers may want to tell apart. Each is wrapped together
// with a syscall.Errno, so errors.Is works with both.
var (
	// ErrRollback: the store's newest root is older than (or forks from) the last root this
	// cache saw (docs/core.md "Open", check T15). The message contains "rollback detected".
	ErrRollback = rootsync.ErrRollback
	// ErrLeaseHeld: another writer mount holds the store's lease (no longer raised: there is
	// no writer lock; kept for callers that still test for it).
	ErrLeaseHeld = errors.New("another writer holds the store lease")
	// ErrConflict: another writer created the root this mount wanted to write.
	ErrConflict = rootsync.ErrConflict
)

// errnoErr wraps an errno with a message: errors.Is(err, errno) holds.
func errnoErr(errno syscall.Errno, format string, args ...any) error {
	return fmt.Errorf("core: "+format+": %w", append(args, errno)...)
}

// eio marks err (a store or verification failure) as EIO while keeping it inspectable
// (errors.Is(err, backend.ErrNotExist) still holds). An errno inside err (ECONNRESET deep
// in a store error, ENOENT of a local store's file) does not reach the caller: only EIO
// passes (docs/core.md, "Errors").
func eio(what string, err error) error { return withErrno(what, err, storeErrnos) }

// localErr maps a local disk error (cache directory, spool, bbolt): the errnos in
// localErrnos pass through, anything else is EIO.
func localErr(what string, err error) error { return withErrno(what, err, localErrnos) }

// The errnos that pass through eio and localErr (docs/core.md, "Errors").
var (
	storeErrnos = []syscall.Errno{syscall.EIO}
	localErrnos = []syscall.Errno{syscall.EIO, syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS, syscall.EFBIG}
)

// errnoFirst is an error whose errno is found first by errors.As, before any errno the
// wrapped error holds.
type errnoFirst struct {
	msg   string
	errno syscall.Errno
	err   error
}

func (e *errnoFirst) Error() string   { return e.msg }
func (e *errnoFirst) Unwrap() []error { return []error{e.errno, e.err} }

func withErrno(what string, err error, pass []syscall.Errno) error {
	if err == nil {
		return nil
	}
	var en syscall.Errno
	if errors.As(err, &en) && slices.Contains(pass, en) {
		return fmt.Errorf("core: %s: %w", what, err)
	}
	return &errnoFirst{msg: fmt.Sprintf("core: %s: %v (%v)", what, err, syscall.EIO), errno: syscall.EIO, err: err}
}

func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return errnoErr(syscall.EINVAL, "invalid name %q", name)
	case len(name) > 255:
		return errnoErr(syscall.ENAMETOOLONG, "name too long")
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return errnoErr(syscall.EINVAL, "invalid name %q", name)
		}
	}
	return nil
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func errorsIs(err, target error) bool { return errors.Is(err, target) }
