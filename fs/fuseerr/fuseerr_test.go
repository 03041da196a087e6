package fuseerr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"

	"bazil.org/fuse"
)

func TestErrno(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	wrapped := func(e syscall.Errno) error {
		return fmt.Errorf("core: rename %q: %w", "x", fmt.Errorf("inner: %w", e))
	}
	sentinel := errors.New("another writer holds the store lease")
	cases := []struct {
		in   error
		want syscall.Errno
	}{
		{wrapped(syscall.ENOENT), syscall.ENOENT},
		{wrapped(syscall.ENOTEMPTY), syscall.ENOTEMPTY},
		{wrapped(syscall.ENOSPC), syscall.ENOSPC},
		{wrapped(syscall.EROFS), syscall.EROFS},
		{wrapped(syscall.ENODATA), syscall.ENODATA},
		{fmt.Errorf("core: %w (%w)", sentinel, syscall.EIO), syscall.EIO},
		{fmt.Errorf("op: %w", context.Canceled), syscall.EINTR},
		{fmt.Errorf("op: %w", os.ErrNotExist), syscall.ENOENT},
		{errors.New("something unclassified"), syscall.EIO},
		{fmt.Errorf("store: %w", context.DeadlineExceeded), syscall.EIO},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), syscall.EIO},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, syscall.EIO},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("no route")}, syscall.EIO},
		{fmt.Errorf("s3 get: %w", &net.OpError{Op: "dial", Net: "tcp", Err: context.Canceled}), syscall.EINTR},
		{fuse.Errno(syscall.EPERM), syscall.EPERM},
	}
	for _, c := range cases {
		got := Errno(log, "test", c.in)
		// bazil answers with fuse.ToErrno: the result must survive it unchanged, i.e. be a
		// bare errno, not a wrapper (which bazil would turn into EIO).
		if fe := fuse.ToErrno(got); syscall.Errno(fe) != c.want {
			t.Errorf("Errno(%v) = %v (bazil sends %v), want %v", c.in, got, syscall.Errno(fe), c.want)
		}
	}
	if Errno(log, "test", nil) != nil {
		t.Error("Errno(nil) != nil")
	}
}
