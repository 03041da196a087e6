package core

import (
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors for conditions callers may want to tell apart. Each is wrapped together
// with a syscall.Errno, so errors.Is works with both.
var (
	// ErrRollback: the store's newest root is older than (or forks from) the last root this
	// cache saw (SECURITY.md 5.3, T15). The message contains "rollback detected".
	ErrRollback = errors.New("rollback detected")
	// ErrLeaseHeld: another writer mount holds the store's lease.
	ErrLeaseHeld = errors.New("another writer holds the store lease")
	// ErrConflict: another writer created the root this mount wanted to write.
	ErrConflict = errors.New("another writer committed a root concurrently")
)

// errnoErr wraps an errno with a message: errors.Is(err, errno) holds.
func errnoErr(errno syscall.Errno, format string, args ...any) error {
	return fmt.Errorf("core: "+format+": %w", append(args, errno)...)
}

// eio marks err (a store or verification failure) as EIO while keeping it inspectable.
func eio(what string, err error) error {
	if err == nil {
		return nil
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return fmt.Errorf("core: %s: %w", what, err)
	}
	return fmt.Errorf("core: %s: %w (%w)", what, err, syscall.EIO)
}

// localErr maps a local disk error: ENOSPC and friends pass through, the rest is EIO.
func localErr(what string, err error) error {
	if err == nil {
		return nil
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return fmt.Errorf("core: %s: %w", what, err)
	}
	return fmt.Errorf("core: %s: %w (%w)", what, err, syscall.EIO)
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
