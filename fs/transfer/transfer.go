// Package transfer copies trees between a local directory and an open vault namespace
// (fs/core) without a FUSE mount: `imgfs import` and `imgfs export` (docs/cli.md). Both keep
// file bytes, permission bits, modification times, symlinks and hard links, and write each
// file under a temporary name that is renamed into place once complete, so an interrupted or
// failed copy never leaves a partial file under a real name.
package transfer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// Options drive one import or export.
type Options struct {
	// Warn receives one line per skipped entry (sockets, fifos, devices); nil discards them.
	Warn io.Writer
	// Progress, if set, is told the total bytes to copy before the copy starts and each
	// piece copied after.
	Progress Progress
}

// Progress follows a copy (the CLI draws a bar with it).
type Progress interface {
	Start(total int64)
	Add(n int64)
}

// Result counts what a copy did.
type Result struct {
	Files, Dirs, Symlinks, Hardlinks, Skipped int
	Bytes                                     int64 // bytes of the files copied
}

// keepMode are the mode bits import and export carry over.
const keepMode = os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky

// bufSize is the size of one read or write.
const bufSize = 1 << 20

func (o *Options) warnf(format string, args ...any) {
	if o.Warn != nil {
		fmt.Fprintf(o.Warn, format, args...)
	}
}

func (o *Options) start(total func() int64) {
	if o.Progress != nil {
		o.Progress.Start(total())
	}
}

func (o *Options) add(n int64) {
	if o.Progress != nil {
		o.Progress.Add(n)
	}
}

// PathError says which vault path failed, in words for the common errnos; other errors are
// wrapped (errors.Is still sees the errno).
func PathError(p string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%s: no such file or directory in the vault", p)
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%s: a path component is not a directory in the vault", p)
	}
	return fmt.Errorf("%s: %w", p, err)
}

func atimeOf(info fs.FileInfo) time.Time {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Atim.Sec, st.Atim.Nsec)
	}
	return info.ModTime()
}
