// Package local is the embedded default store: one file per object in a directory tree.
//
// An object name such as "c/ab/ab12..." maps to the file DIR/c/ab/ab12...; the fan-out
// folders come from the names themselves. Put writes an unnamed file (O_TMPFILE) in the
// object's folder, or where the file system has none a temporary file under DIR/.tmp,
// fsyncs it, links it to its final name with link(2) (which never replaces an existing
// file, so of two concurrent writers of one name exactly one wins and the other gets
// backend.ErrExist), then fsyncs the folder that received the link. Readers therefore see
// either no object or the whole object. PutUnsynced skips both fsyncs and SyncPuts makes
// everything stored so far durable with one syncfs(2) (backend.UnsyncedPutter: fs/core's
// background sealers, docs/core.md). Temporary files left by a crashed writer are removed
// by the next Open (a live writer holds an flock on its temp file, so it is never removed
// from under it).
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/imgfs/imgfs/backend"
)

// tmpDir is the folder (inside the store) for objects being written. Object names never
// have a component starting with '.', so it cannot collide with an object.
const tmpDir = ".tmp"

// Store is a directory-backed backend.Store.
type Store struct {
	root string
	tmp  string
	dirs sync.Map // folder path -> struct{}: folders known to exist (and to be durable)
	// noTmpfile: the file system has no O_TMPFILE (or /proc is missing): Puts write a named
	// temp file under .tmp instead
	noTmpfile atomic.Bool
}

var (
	_ backend.Store      = (*Store)(nil)
	_ backend.Overwriter = (*Store)(nil)
)

// Open opens (creating it with mode 0700 where missing) the store in dir and removes
// temporary files left by writers that no longer run.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, backend.Permanent(errors.New("local store: empty directory path"))
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, backend.Permanent(fmt.Errorf("local store %s: %w", dir, err))
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, classify("open", "", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, classify("open", "", err)
	}
	if !fi.IsDir() {
		return nil, backend.Permanent(fmt.Errorf("local store %s: not a directory", abs))
	}
	s := &Store{root: abs, tmp: filepath.Join(abs, tmpDir)}
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		s.noTmpfile.Store(true)
	}
	if err := os.Mkdir(s.tmp, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, classify("open", "", err)
	}
	if err := s.cleanTemp(); err != nil {
		return nil, err
	}
	return s, nil
}

var _ backend.LocalPather = (*Store)(nil)

// Dir returns the absolute path of the store's directory.
func (s *Store) Dir() string { return s.root }

// Path returns the file that holds object name (backend.LocalPather: the core reads content
// objects in place; tests and tools inspect the store through it).
func (s *Store) Path(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(name)), nil
}

// cleanTemp removes temp files that no live writer holds locked.
func (s *Store) cleanTemp() error {
	ents, err := os.ReadDir(s.tmp)
	if err != nil {
		return classify("open", "", err)
	}
	for _, e := range ents {
		p := filepath.Join(s.tmp, e.Name())
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = os.Remove(p)
		}
		f.Close()
	}
	return nil
}

// ValidName is backend.ValidName.
func ValidName(name string) error { return backend.ValidName(name) }

func validPrefix(prefix string) error { return backend.ValidPrefix(prefix) }

// Put stores size bytes from r under name; see backend.Store.
func (s *Store) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	return s.put(ctx, name, r, size, true)
}

var _ backend.UnsyncedPutter = (*Store)(nil)

// PutUnsynced is Put without the two fsyncs (the object's data and its folder): the object
// is whole for readers at once, and durable after the next SyncPuts (backend.UnsyncedPutter).
// After a power loss before that, the object may be missing or short; a later Put of it
// finds a short one by its size (dedup.UploadWith replaces it).
func (s *Store) PutUnsynced(ctx context.Context, name string, r io.Reader, size int64) error {
	return s.put(ctx, name, r, size, false)
}

func (s *Store) put(ctx context.Context, name string, r io.Reader, size int64, durable bool) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if size < 0 {
		return backend.Permanent(fmt.Errorf("local put %s: negative size", name))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dst := filepath.Join(s.root, filepath.FromSlash(name))
	// Cheap early answer for the common dedup hit; link(2) in write is the real check.
	if fi, err := os.Lstat(dst); err == nil {
		if !fi.Mode().IsRegular() {
			return backend.Permanent(fmt.Errorf("local put %s: a folder or special file has that name", name))
		}
		return fmt.Errorf("local put %s: %w", name, backend.ErrExist)
	}
	return s.write(ctx, name, dst, r, size, false, durable)
}

// SyncPuts makes every object stored so far durable: one syncfs(2) of the store's file
// system instead of two fsyncs per object (backend.UnsyncedPutter).
func (s *Store) SyncPuts(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := os.Open(s.root)
	if err != nil {
		return classify("sync", "", err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return classify("sync", "", err)
	}
	return nil
}

// Overwrite replaces the object (or creates it) atomically with rename(2); see
// backend.Overwriter. Only for repairing a damaged object.
func (s *Store) Overwrite(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if size < 0 {
		return backend.Permanent(fmt.Errorf("local overwrite %s: negative size", name))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dst := filepath.Join(s.root, filepath.FromSlash(name))
	if fi, err := os.Lstat(dst); err == nil && !fi.Mode().IsRegular() {
		return backend.Permanent(fmt.Errorf("local overwrite %s: a folder or special file has that name", name))
	}
	return s.write(ctx, name, dst, r, size, true, true)
}

// write stores the object through a temp file: link(2) for create-only, rename(2) to replace;
// with durable, the file and its folder are fsynced before it returns.
func (s *Store) write(ctx context.Context, name, dst string, r io.Reader, size int64, replace, durable bool) (err error) {
	op := "put"
	if replace {
		op = "overwrite"
	}
	dir := filepath.Dir(dst)
	err = s.mkdirs(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// A cached folder was removed behind the store's back: forget the cache.
		s.dirs.Clear()
		err = s.mkdirs(dir)
	}
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			return backend.Permanent(fmt.Errorf("local %s %s: an object is stored where a folder of its name is needed", op, name))
		}
		return classify(op, name, err)
	}
	if !replace && !s.noTmpfile.Load() {
		f, err := os.OpenFile(dir, unix.O_TMPFILE|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrNotExist) {
			// The folder was removed since it was cached: make it again.
			s.dirs.Clear()
			if err = s.mkdirs(dir); err == nil {
				f, err = os.OpenFile(dir, unix.O_TMPFILE|os.O_WRONLY, 0o600)
			}
		}
		if err == nil {
			return s.writeTmpfile(ctx, name, dst, f, r, size, durable)
		}
		if !errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.EISDIR) && !errors.Is(err, syscall.EINVAL) {
			return classify(op, name, err)
		}
		s.noTmpfile.Store(true)
	}
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(s.tmp, hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		// Someone removed .tmp: make it again.
		if merr := os.Mkdir(s.tmp, 0o700); merr == nil || errors.Is(merr, fs.ErrExist) {
			f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		}
	}
	if err != nil {
		return classify(op, name, err)
	}
	defer func() {
		_ = os.Remove(tmp) // after link(2) the object keeps its own name; after rename a no-op
		f.Close()
	}()
	// Keep cleanTemp of another Open off this file while it is being written.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return classify(op, name, err)
	}
	if err := copyCtx(ctx, f, r, size); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var pe *os.PathError
		if errors.As(err, &pe) {
			return classify(op, name, err)
		}
		return fmt.Errorf("local %s %s: reading source: %w", op, name, err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			return classify(op, name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	place := func() error {
		if replace {
			return os.Rename(tmp, dst)
		}
		return os.Link(tmp, dst)
	}
	err = place()
	if errors.Is(err, fs.ErrNotExist) {
		// The fan-out folder was removed since it was cached: make it again.
		s.dirs.Clear()
		if err = s.mkdirs(dir); err == nil {
			err = place()
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return backend.Permanent(fmt.Errorf("local %s %s: %w", op, name, err))
		}
		return classify(op, name, err)
	}
	if durable {
		if err := syncDir(dir); err != nil {
			return classify(op, name, err)
		}
	}
	return nil
}

// writeTmpfile is write's create-only path through an unnamed file (O_TMPFILE) in the
// object's folder, given a name with linkat(2) once whole: no temp name to create and remove
// (a file creation costs a few hundred µs of CPU on ext4 under load, docs/perf.md), nothing
// left behind by a crash.
func (s *Store) writeTmpfile(ctx context.Context, name, dst string, f *os.File, r io.Reader, size int64, durable bool) error {
	defer f.Close()
	if err := copyCtx(ctx, f, r, size); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var pe *os.PathError
		if errors.As(err, &pe) {
			return classify("put", name, err)
		}
		return fmt.Errorf("local put %s: reading source: %w", name, err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			return classify("put", name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	src := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	link := func() error { return unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW) }
	err := link()
	if errors.Is(err, syscall.ENOENT) {
		// The folder was removed while the object was written: make it again.
		s.dirs.Clear()
		if err = s.mkdirs(filepath.Dir(dst)); err == nil {
			err = link()
		}
	}
	if err != nil {
		return classify("put", name, &os.LinkError{Op: "link", Old: src, New: dst, Err: err})
	}
	if durable {
		if err := syncDir(filepath.Dir(dst)); err != nil {
			return classify("put", name, err)
		}
	}
	return nil
}

// copyCtx copies exactly size bytes from r to w, checking ctx between chunks.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader, size int64) error {
	buf := make([]byte, 256<<10)
	var done int64
	for done < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int64(len(buf))
		if size-done < n {
			n = size - done
		}
		m, err := io.ReadFull(r, buf[:n])
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return werr
			}
			done += int64(m)
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("source ended after %d of %d bytes: %w", done, size, io.ErrUnexpectedEOF)
			}
			return err
		}
	}
	return nil
}

// mkdirs creates dir and its missing parents below the root, fsyncing each parent that
// received a new entry so that the object stays reachable after a crash.
func (s *Store) mkdirs(dir string) error {
	if _, ok := s.dirs.Load(dir); ok {
		return nil
	}
	if dir == s.root {
		return nil
	}
	fi, err := os.Lstat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &os.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		s.dirs.Store(dir, struct{}{})
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if err := s.mkdirs(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	s.dirs.Store(dir, struct{}{})
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Get returns the bytes [off, off+length) of the object (length < 0: to the end). An offset
// at or past the end gives an empty reader.
func (s *Store) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, backend.Permanent(fmt.Errorf("local get %s: negative offset", name))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.root, filepath.FromSlash(name)), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, classify("get", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, classify("get", name, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("local get %s: %w", name, backend.ErrNotExist)
	}
	if length < 0 {
		length = fi.Size() - off
	}
	if off >= fi.Size() || length <= 0 {
		length = 0
	}
	return &rangeReader{ctx: ctx, name: name, f: f, r: io.NewSectionReader(f, off, length)}, nil
}

type rangeReader struct {
	ctx  context.Context
	name string
	f    *os.File
	r    *io.SectionReader
}

func (r *rangeReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = classify("get", r.name, err)
	}
	return n, err
}

func (r *rangeReader) Close() error { return r.f.Close() }

// Stat returns the object's size.
func (s *Store) Stat(ctx context.Context, name string) (backend.Info, error) {
	if err := ValidName(name); err != nil {
		return backend.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return backend.Info{}, err
	}
	fi, err := os.Lstat(filepath.Join(s.root, filepath.FromSlash(name)))
	if err != nil {
		return backend.Info{}, classify("stat", name, err)
	}
	if !fi.Mode().IsRegular() {
		return backend.Info{}, fmt.Errorf("local stat %s: %w", name, backend.ErrNotExist)
	}
	return backend.Info{Name: name, Size: fi.Size()}, nil
}

// Delete removes the object.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := filepath.Join(s.root, filepath.FromSlash(name))
	fi, err := os.Lstat(p)
	if err != nil {
		return classify("delete", name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("local delete %s: %w", name, backend.ErrNotExist)
	}
	if err := os.Remove(p); err != nil {
		return classify("delete", name, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return classify("delete", name, err)
	}
	return nil
}

// List calls fn for every object whose name starts with prefix.
func (s *Store) List(ctx context.Context, prefix string, fn func(backend.Info) error) error {
	if err := validPrefix(prefix); err != nil {
		return err
	}
	// Walk only the deepest folder that the prefix names in full.
	start := s.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	errStop := errors.New("stop")
	var fnErr error
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipAll
			}
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while listing
			}
			return err
		}
		rel, rerr := filepath.Rel(s.root, p)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if p == start {
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			// Skip folders that cannot contain a match.
			if !strings.HasPrefix(rel+"/", prefix) && !strings.HasPrefix(prefix, rel+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") || !strings.HasPrefix(rel, prefix) {
			return nil
		}
		fi, ierr := d.Info()
		if ierr != nil {
			if errors.Is(ierr, fs.ErrNotExist) {
				return nil
			}
			return ierr
		}
		if e := fn(backend.Info{Name: rel, Size: fi.Size()}); e != nil {
			fnErr = e
			return errStop
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		return classify("list", prefix, err)
	}
	return nil
}

// Close does nothing; the store holds no open resources between calls.
func (s *Store) Close() error { return nil }

// classify maps a file-system error to the backend's error classes.
func classify(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	msg := "local " + op
	if name != "" {
		msg += " " + name
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", msg, backend.ErrNotExist)
		}
		return backend.Permanent(fmt.Errorf("%s: %w", msg, err))
	}
	switch errno {
	case syscall.ENOENT, syscall.ENOTDIR:
		return fmt.Errorf("%s: %w", msg, backend.ErrNotExist)
	case syscall.EEXIST:
		return fmt.Errorf("%s: %w", msg, backend.ErrExist)
	case syscall.EIO, syscall.EAGAIN, syscall.EINTR, syscall.ETIMEDOUT, syscall.EBUSY,
		syscall.ESTALE, syscall.ENOMEM, syscall.ENFILE, syscall.EMFILE, syscall.ENOLCK:
		return backend.Transient(fmt.Errorf("%s: %w", msg, err))
	default: // ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EFBIG, ENAMETOOLONG, ...
		return backend.Permanent(fmt.Errorf("%s: %w", msg, err))
	}
}
