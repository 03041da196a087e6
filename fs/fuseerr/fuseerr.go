// Package fuseerr is the one mapping of errors to errnos at the FUSE boundary. Every bazil
// handler of imgfs returns its error through Errno: the real tree's (fs) and the
// near-duplicate tree's (fs/similar).
package fuseerr

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"syscall"

	"bazil.org/fuse"

	"github.com/imgfs/imgfs/backend"
)

// Errno maps err to what a FUSE handler returns. bazil answers EIO for any error that is not
// a bare syscall.Errno or fuse.ErrorNumber, so wrapped errnos are unwrapped here. A store's
// network failure (backend.IsNetwork) is EIO; interrupted requests answer EINTR. Anything
// unclassified is EIO, logged once here.
func Errno(log *slog.Logger, op string, err error) error {
	if err == nil {
		return nil
	}
	if backend.IsNetwork(err) {
		// a store's network failure deep inside the chain: to programs it is EIO
		log.Error("imgfs: "+op+" failed", "err", err)
		return syscall.EIO
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		if en == syscall.ENODATA {
			return fuse.ErrNoXattr
		}
		return en
	}
	var fn fuse.ErrorNumber
	if errors.As(err, &fn) {
		return fuse.Errno(fn.Errno())
	}
	if errors.Is(err, context.Canceled) {
		return syscall.EINTR
	}
	if errors.Is(err, os.ErrNotExist) {
		return syscall.ENOENT
	}
	if errors.Is(err, os.ErrExist) {
		return syscall.EEXIST
	}
	if errors.Is(err, os.ErrPermission) {
		return syscall.EACCES
	}
	if errors.Is(err, context.DeadlineExceeded) {
		log.Error("imgfs: "+op+" timed out", "err", err)
		return syscall.EIO
	}
	log.Error("imgfs: "+op+" failed", "err", err)
	return syscall.EIO
}
