package core

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/imgfs/imgfs/backend"
)

// eio and localErr pass only their documented errnos (docs/core.md, "Errors"): the first
// errno errors.As finds is what fs/ answers the kernel; anything else inside is EIO.
func TestErrnoMapping(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	cases := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"store: connection reset", eio("uploading content", backend.Transient(reset)), syscall.EIO},
		{"store: local file missing", eio("reading", &os.PathError{Op: "open", Path: "x", Err: syscall.ENOENT}), syscall.EIO},
		{"store: full local disk", eio("storing", fmt.Errorf("put: %w", syscall.ENOSPC)), syscall.EIO},
		{"store: plain error", eio("reading root 3", errors.New("bad")), syscall.EIO},
		{"local: full disk", localErr("writing spool", &os.PathError{Op: "write", Path: "s", Err: syscall.ENOSPC}), syscall.ENOSPC},
		{"local: quota", localErr("writing spool", syscall.EDQUOT), syscall.EDQUOT},
		{"local: read-only disk", localErr("creating spool", syscall.EROFS), syscall.EROFS},
		{"local: bad descriptor", localErr("reading spool", syscall.EBADF), syscall.EIO},
		{"local: permission", localErr("opening", &os.PathError{Op: "open", Path: "c", Err: syscall.EACCES}), syscall.EIO},
		{"sync: errno of the working copy", syncErr("committing", errnoErr(syscall.ENOSPC, "inodes exhausted")), syscall.ENOSPC},
		{"sync: rollback", syncErr("opening", fmt.Errorf("%w: root 3", ErrRollback)), syscall.EIO},
	}
	for _, c := range cases {
		var en syscall.Errno
		if !errors.As(c.err, &en) || en != c.want {
			t.Errorf("%s: %v maps to %v, want %v", c.name, c.err, en, c.want)
		}
	}
	// The cause stays inspectable.
	if err := eio("reading", fmt.Errorf("get: %w", backend.ErrNotExist)); !errors.Is(err, backend.ErrNotExist) || !errors.Is(err, syscall.EIO) {
		t.Errorf("eio lost its cause: %v", err)
	}
	if err := syncErr("opening", fmt.Errorf("%w: fork", ErrRollback)); !errors.Is(err, ErrRollback) {
		t.Errorf("syncErr lost the rollback: %v", err)
	}
}
