package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/imgfs/imgfs/fs/core"
)

type dirAttr struct {
	ino   core.Ino
	mode  os.FileMode
	mtime time.Time
	atime time.Time
}

type importer struct {
	ctx    context.Context
	fsys   *core.FS
	o      Options
	buf    []byte
	res    Result
	links  map[[2]uint64]core.Ino // (dev, ino) of a local file with several links -> vault inode
	dirs   []dirAttr              // applied deepest first once the tree is in
	inodes map[string]core.Ino    // local directory -> vault inode
}

// ErrSourceKind: the import source is neither a directory nor a regular file.
var ErrSourceKind = errors.New("neither a directory nor a regular file")

// CheckSource says whether src can be imported (before the vault is opened): a missing
// source gives its error, one of another kind an error matching ErrSourceKind.
func CheckSource(src string) (fs.FileInfo, error) {
	st, err := os.Lstat(src)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if !st.IsDir() && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("source %s is %w", src, ErrSourceKind)
	}
	return st, nil
}

// Import copies the local directory src into the vault directory dest (created with its
// parents if missing), like cp -a src/. dest: regular files, directories, symlinks (as links)
// and hard links; sockets, fifos and devices are skipped with a warning. Existing vault files
// of the same name are replaced. A regular file src is imported as dest, or into dest when
// dest is a vault directory. It returns once everything is sealed, stored and committed
// (fsys.Sync). The source is checked as by CheckSource.
func Import(ctx context.Context, fsys *core.FS, src, dest string, o Options) (Result, error) {
	im := &importer{ctx: ctx, fsys: fsys, o: o, buf: make([]byte, bufSize),
		links: map[[2]uint64]core.Ino{}, inodes: map[string]core.Ino{}}
	st, err := CheckSource(src)
	if err != nil {
		return im.res, err
	}
	im.o.start(func() int64 { return localBytes(src) })

	if st.Mode().IsRegular() {
		parent, name, err := im.fileTarget(dest, filepath.Base(src))
		if err != nil {
			return im.res, err
		}
		if err := im.file(src, st, parent, name); err != nil {
			return im.res, err
		}
		return im.res, im.sync()
	}

	root, err := im.mkdirAll(dest)
	if err != nil {
		return im.res, err
	}
	im.inodes["."] = root
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if rel == "." {
			if dest != "/" {
				im.dirs = append(im.dirs, dirAttrOf(root, info))
			}
			return nil
		}
		parent, ok := im.inodes[filepath.Dir(rel)]
		if !ok {
			return fmt.Errorf("import: internal error: no parent for %s", rel)
		}
		name := filepath.Base(rel)
		vp := path.Join(dest, filepath.ToSlash(rel))
		switch {
		case info.IsDir():
			ino, err := im.mkdir(parent, name, vp)
			if err != nil {
				return err
			}
			im.inodes[rel] = ino
			im.dirs = append(im.dirs, dirAttrOf(ino, info))
			im.res.Dirs++
		case info.Mode().IsRegular():
			if err := im.file(p, info, parent, name); err != nil {
				return err
			}
		case info.Mode()&os.ModeSymlink != 0:
			if err := im.symlink(p, info, parent, name, vp); err != nil {
				return err
			}
		default:
			im.o.warnf("imgfs: warning: skipping %s (not a file, directory or symlink)\n", p)
			im.res.Skipped++
		}
		return nil
	})
	if err != nil {
		return im.res, err
	}
	// Directory attributes last, deepest first: adding entries changes a directory's mtime.
	for i := len(im.dirs) - 1; i >= 0; i-- {
		d := im.dirs[i]
		mode := d.mode
		if _, err := im.fsys.SetAttr(d.ino, core.SetAttrRequest{Mode: &mode, Mtime: &d.mtime, Atime: &d.atime}); err != nil {
			return im.res, err
		}
	}
	return im.res, im.sync()
}

func (im *importer) sync() error {
	if err := im.fsys.Sync(im.ctx); err != nil {
		return fmt.Errorf("storing the imported files: %w", err)
	}
	return nil
}

func dirAttrOf(ino core.Ino, info fs.FileInfo) dirAttr {
	return dirAttr{ino: ino, mode: info.Mode() & keepMode, mtime: info.ModTime(), atime: atimeOf(info)}
}

// localBytes sums the sizes of the regular files under p (for the progress bar).
func localBytes(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if i, err := d.Info(); err == nil {
				n += i.Size()
			}
		}
		return nil
	})
	return n
}

// mkdirAll creates the vault directory p and its parents.
func (im *importer) mkdirAll(p string) (core.Ino, error) {
	ino := core.RootIno
	cur := "/"
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		if part == "" {
			continue
		}
		cur = path.Join(cur, part)
		next, err := im.mkdir(ino, part, cur)
		if err != nil {
			return 0, err
		}
		ino = next
	}
	return ino, nil
}

// mkdir creates a directory or returns the existing one.
func (im *importer) mkdir(parent core.Ino, name, vp string) (core.Ino, error) {
	a, err := im.fsys.Mkdir(parent, name, 0o700)
	if err == nil {
		return a.Ino, nil
	}
	if !errors.Is(err, syscall.EEXIST) {
		return 0, PathError(vp, err)
	}
	a, err = im.fsys.Lookup(parent, name)
	if err != nil {
		return 0, PathError(vp, err)
	}
	if !a.Mode.IsDir() {
		return 0, fmt.Errorf("%s: exists in the vault and is not a directory", vp)
	}
	return a.Ino, nil
}

// fileTarget resolves where a single imported file goes.
func (im *importer) fileTarget(dest, base string) (core.Ino, string, error) {
	if ino, err := im.fsys.Resolve(dest); err == nil {
		if a, err := im.fsys.GetAttr(ino); err == nil && a.Mode.IsDir() {
			return ino, base, nil
		}
	}
	if dest == "/" {
		return core.RootIno, base, nil
	}
	parent, err := im.mkdirAll(path.Dir(dest))
	if err != nil {
		return 0, "", err
	}
	return parent, path.Base(dest), nil
}

// removeExisting removes a non-directory entry of that name, if any.
func (im *importer) removeExisting(parent core.Ino, name, vp string) error {
	a, err := im.fsys.Lookup(parent, name)
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return PathError(vp, err)
	}
	if a.Mode.IsDir() {
		return fmt.Errorf("%s: is a directory in the vault", vp)
	}
	if err := im.fsys.Remove(parent, name, false); err != nil {
		return PathError(vp, err)
	}
	return nil
}

// file copies one local file: into a temporary vault name first, renamed over name once
// complete, so an interrupted or failed import never leaves a partial file under a real
// name, and replacing one name of a hard-linked vault file leaves its other names alone.
func (im *importer) file(local string, info fs.FileInfo, parent core.Ino, name string) error {
	vp := name
	var linkKey *[2]uint64
	if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, ok := im.links[key]; ok {
			if err := im.removeExisting(parent, name, vp); err != nil {
				return err
			}
			if _, err := im.fsys.Link(first, parent, name); err != nil {
				return PathError(local, err)
			}
			im.res.Hardlinks++
			return nil
		}
		linkKey = &key
	}
	if a, err := im.fsys.Lookup(parent, name); err == nil && a.Mode.IsDir() {
		return fmt.Errorf("%s: is a directory in the vault", local)
	}
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	var tmp string
	var a core.Attr
	var h *core.Handle
	for i := 0; ; i++ {
		tmp = fmt.Sprintf(".%s.imgfs-import-%d", name, i)
		if len(tmp) > 255 {
			tmp = fmt.Sprintf(".imgfs-import-%d", i)
		}
		a, h, err = im.fsys.Create(parent, tmp, 0o600, true)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EEXIST) || i > 100 {
			return PathError(local, err)
		}
	}
	ok := false
	defer func() {
		if !ok {
			h.Release()
			_ = im.fsys.Remove(parent, tmp, false)
		}
	}()
	var off int64
	for {
		if err := im.ctx.Err(); err != nil {
			return err
		}
		n, rerr := f.Read(im.buf)
		if n > 0 {
			if _, err := h.WriteAt(im.buf[:n], off); err != nil {
				return fmt.Errorf("%s: writing into the vault: %w", local, err)
			}
			off += int64(n)
			im.o.add(int64(n))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := h.Flush(); err != nil {
		return fmt.Errorf("%s: %w", local, err)
	}
	mode, mtime, atime := info.Mode()&keepMode, info.ModTime(), atimeOf(info)
	if _, err := im.fsys.SetAttr(a.Ino, core.SetAttrRequest{Mode: &mode, Mtime: &mtime, Atime: &atime}); err != nil {
		return fmt.Errorf("%s: %w", local, err)
	}
	if err := im.fsys.Rename(parent, tmp, parent, name); err != nil {
		return PathError(local, err)
	}
	ok = true
	if err := h.Release(); err != nil {
		return fmt.Errorf("%s: %w", local, err)
	}
	if linkKey != nil {
		im.links[*linkKey] = a.Ino
	}
	im.res.Files++
	im.res.Bytes += off
	return nil
}

func (im *importer) symlink(local string, info fs.FileInfo, parent core.Ino, name, vp string) error {
	target, err := os.Readlink(local)
	if err != nil {
		return err
	}
	if err := im.removeExisting(parent, name, vp); err != nil {
		return err
	}
	a, err := im.fsys.Symlink(parent, name, target)
	if err != nil {
		return PathError(vp, err)
	}
	mtime := info.ModTime()
	if _, err := im.fsys.SetAttr(a.Ino, core.SetAttrRequest{Mtime: &mtime}); err != nil {
		return PathError(vp, err)
	}
	im.res.Symlinks++
	return nil
}
