package core

import (
	"bytes"
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// A file being written while other files are closed, renamed and the group-commit window
// commits is not recorded before its own close: after kill -9 it is absent.
func TestKill9UnflushedNotPersistedByBarriers(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	writeFile(t, f, "/old", randBytes(1000))
	_, h, err := f.Create(RootIno, "new", 0o644, false)
	ok(t, err)
	data := randBytes(300_000)
	_, err = h.WriteAt(data[:100_000], 0)
	ok(t, err)
	// Barriers by other files: close of another file, rename, the batch timer.
	writeFile(t, f, "/other", randBytes(5000))
	ok(t, f.Rename(RootIno, "other", RootIno, "other2"))
	time.Sleep(3 * batchDelay)
	_, err = h.WriteAt(data[100_000:200_000], 100_000)
	ok(t, err)
	writeFile(t, f, "/other3", randBytes(5000))
	f.crash()
	f = e.open()
	ino, err := f.Resolve("/new")
	if err == nil {
		h, err := f.OpenFile(ino, os.O_RDONLY)
		ok(t, err)
		got := readAllHandle(t, h)
		h.Release()
		if len(got) != 0 {
			t.Fatalf("unflushed file holds %d bytes after kill -9", len(got))
		}
	}
	if !bytes.Equal(readFile(t, f, "/other2"), readFile(t, f, "/other2")) {
		t.Fatal("unreachable")
	}
}

// An O_TRUNC rewrite that was not closed leaves the old version (or an empty file).
func TestKill9TruncNotPersisted(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	old := randBytes(200_000)
	ino := writeFile(t, f, "/a", old)
	h, err := f.OpenFile(ino, os.O_WRONLY|os.O_TRUNC)
	ok(t, err)
	_, err = h.WriteAt(randBytes(100_000), 0)
	ok(t, err)
	writeFile(t, f, "/b", randBytes(10))
	time.Sleep(3 * batchDelay)
	f.crash()
	f = e.open()
	got := readFile(t, f, "/a")
	if len(got) != 0 && !bytes.Equal(got, old) {
		t.Fatalf("torn rewrite: %d bytes", len(got))
	}
}

// create + close without writes (cp of an empty file) is durable at close.
func TestKill9EmptyCreateDurableAtClose(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	_, h, err := f.CreateFlags(RootIno, "empty", 0o644, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	ok(t, err)
	ok(t, h.Flush())
	f.crash() // within the batch delay: only a barrier made it durable
	f = e.open()
	if _, err := f.Resolve("/empty"); err != nil {
		t.Fatalf("close-acknowledged empty file lost: %v", err)
	}
}

// fsync on a fresh read-only handle (`sync FILE` after cp) stores the file: it survives
// the loss of the cache.
func TestFsyncReadOnlyHandleStores(t *testing.T) {
	for _, size := range []int{0, 70_000} {
		e := newEnv(t)
		f := e.open()
		data := randBytes(size)
		_, h, err := f.CreateFlags(RootIno, "x", 0o644, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		ok(t, err)
		if size > 0 {
			_, err = h.WriteAt(data, 0)
			ok(t, err)
		}
		ok(t, h.Flush())
		ok(t, h.Release())
		ino, err := f.Resolve("/x")
		ok(t, err)
		if size == 0 {
			ok(t, f.FsyncIno(ctx(), ino)) // fs/ routes fsync of any descriptor here
		} else {
			r, err := f.OpenFile(ino, os.O_RDONLY)
			ok(t, err)
			ok(t, r.Fsync(ctx()))
			ok(t, r.Flush())
		}
		f.crash()
		e.cache = t.TempDir()
		e.opts.BreakLease = true
		f = e.open()
		if got := readFile(t, f, "/x"); !bytes.Equal(got, data) {
			t.Fatalf("size %d: after fsync and cache loss: %d bytes", size, len(got))
		}
	}
}

// fsync through the inode records another handle's writes not yet closed, and stores them.
func TestFsyncInoRecordsOpenWrites(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	_, h, err := f.Create(RootIno, "w", 0o644, false)
	ok(t, err)
	data := randBytes(150_000)
	_, err = h.WriteAt(data, 0)
	ok(t, err)
	ok(t, f.FsyncIno(ctx(), h.Ino()))
	f.crash()
	e.cache = t.TempDir()
	e.opts.BreakLease = true
	f = e.open()
	if got := readFile(t, f, "/w"); !bytes.Equal(got, data) {
		t.Fatalf("fsynced file after cache loss: %d bytes", len(got))
	}
	_, err = f.Resolve("/nope")
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatal(err)
	}
}

// An interrupted fsync (cancelled context) is EINTR or success, never EIO.
func TestFsyncCancelledIsNotEIO(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	for i := 0; i < 5; i++ {
		_, h, err := f.Create(RootIno, "c"+itoa(i), 0o644, false)
		ok(t, err)
		_, err = h.WriteAt(randBytes(200_000), 0)
		ok(t, err)
		ok(t, h.Flush())
		c, cancel := context.WithCancel(ctx())
		cancel()
		if err := h.Fsync(c); err != nil && !errors.Is(err, syscall.EINTR) {
			t.Fatalf("cancelled fsync: %v", err)
		} else if errors.Is(err, syscall.EIO) {
			t.Fatalf("cancelled fsync is EIO: %v", err)
		}
		h.Release()
	}
}
