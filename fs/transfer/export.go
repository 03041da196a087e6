package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/imgfs/imgfs/fs/core"
)

type exporter struct {
	ctx   context.Context
	fsys  *core.FS
	o     Options
	buf   []byte
	res   Result
	links map[core.Ino]string // vault inode with several links -> first local path
	dirs  []localDirAttr
}

type localDirAttr struct {
	path string
	a    core.Attr
}

// Export copies the vault directory src into the local directory dest (created if missing),
// like cp -a src/. dest: files byte for byte (every byte verified by the core before it is
// written), permission bits, modification times, symlinks and hard links. A vault file src
// is exported as dest, or into dest when dest is an existing directory.
func Export(ctx context.Context, fsys *core.FS, src, dest string, o Options) (Result, error) {
	ex := &exporter{ctx: ctx, fsys: fsys, o: o, buf: make([]byte, bufSize), links: map[core.Ino]string{}}
	ino, err := fsys.Resolve(src)
	if err != nil {
		return ex.res, PathError(src, err)
	}
	a, err := fsys.GetAttr(ino)
	if err != nil {
		return ex.res, PathError(src, err)
	}
	ex.o.start(func() int64 { return ex.treeBytes(ino) })

	if !a.Mode.IsDir() {
		if st, err := os.Stat(dest); err == nil && st.IsDir() {
			dest = filepath.Join(dest, path.Base(src))
		}
		return ex.res, ex.entry(a, src, dest)
	}
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return ex.res, err
	}
	ex.dirs = append(ex.dirs, localDirAttr{dest, a})
	if err := ex.dir(ino, src, dest); err != nil {
		return ex.res, err
	}
	for i := len(ex.dirs) - 1; i >= 0; i-- {
		d := ex.dirs[i]
		if err := os.Chmod(d.path, d.a.Mode&keepMode); err != nil {
			return ex.res, err
		}
		if err := os.Chtimes(d.path, d.a.Atime, d.a.Mtime); err != nil {
			return ex.res, err
		}
	}
	return ex.res, nil
}

// treeBytes sums the sizes of the regular files under ino (for the progress bar).
func (ex *exporter) treeBytes(ino core.Ino) int64 {
	a, err := ex.fsys.GetAttr(ino)
	if err != nil {
		return 0
	}
	if !a.Mode.IsDir() {
		return a.Size
	}
	var n int64
	ents, err := ex.fsys.ReadDir(ino)
	if err != nil {
		return 0
	}
	for _, e := range ents {
		a, err := ex.fsys.GetAttr(e.Ino)
		if err != nil {
			continue
		}
		if a.Mode.IsDir() {
			n += ex.treeBytes(e.Ino)
		} else if a.Mode.IsRegular() {
			n += a.Size
		}
	}
	return n
}

func (ex *exporter) dir(ino core.Ino, vp, local string) error {
	ents, err := ex.fsys.ReadDir(ino)
	if err != nil {
		return PathError(vp, err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	for _, e := range ents {
		if err := ex.ctx.Err(); err != nil {
			return err
		}
		a, err := ex.fsys.GetAttr(e.Ino)
		if err != nil {
			return PathError(path.Join(vp, e.Name), err)
		}
		if err := ex.entry(a, path.Join(vp, e.Name), filepath.Join(local, e.Name)); err != nil {
			return err
		}
	}
	return nil
}

func (ex *exporter) entry(a core.Attr, vp, local string) error {
	switch {
	case a.Mode.IsDir():
		if err := os.Mkdir(local, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if st, err := os.Lstat(local); err != nil || !st.IsDir() {
			return fmt.Errorf("%s: exists and is not a directory", local)
		}
		ex.dirs = append(ex.dirs, localDirAttr{local, a})
		ex.res.Dirs++
		return ex.dir(a.Ino, vp, local)
	case a.Mode&os.ModeSymlink != 0:
		target, err := ex.fsys.Readlink(a.Ino)
		if err != nil {
			return PathError(vp, err)
		}
		if err := removeNonDir(local); err != nil {
			return err
		}
		if err := os.Symlink(target, local); err != nil {
			return err
		}
		ts := []unix.Timespec{unix.NsecToTimespec(a.Atime.UnixNano()), unix.NsecToTimespec(a.Mtime.UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, local, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%s: setting times: %w", local, err)
		}
		ex.res.Symlinks++
		return nil
	case a.Mode.IsRegular():
		if a.Nlink > 1 {
			if first, ok := ex.links[a.Ino]; ok {
				if err := removeNonDir(local); err != nil {
					return err
				}
				if err := os.Link(first, local); err != nil {
					return err
				}
				ex.res.Hardlinks++
				return nil
			}
			ex.links[a.Ino] = local
		}
		return ex.file(a, vp, local)
	default:
		ex.o.warnf("imgfs: warning: skipping %s (not a file, directory or symlink)\n", vp)
		ex.res.Skipped++
		return nil
	}
}

func removeNonDir(p string) error {
	st, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s: exists and is a directory", p)
	}
	return os.Remove(p)
}

// file writes the vault file to a temporary name next to local, then renames it.
func (ex *exporter) file(a core.Attr, vp, local string) error {
	h, err := ex.fsys.OpenFile(a.Ino, os.O_RDONLY)
	if err != nil {
		return PathError(vp, err)
	}
	defer h.Release()
	tmp, err := os.CreateTemp(filepath.Dir(local), "."+filepath.Base(local)+".imgfs-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var off int64
	for off < a.Size {
		if err := ex.ctx.Err(); err != nil {
			return err
		}
		want := int64(len(ex.buf))
		if a.Size-off < want {
			want = a.Size - off
		}
		n, rerr := h.ReadAt(ex.buf[:want], off)
		if n > 0 {
			if _, err := tmp.Write(ex.buf[:n]); err != nil {
				return err
			}
			off += int64(n)
			ex.o.add(int64(n))
		}
		if rerr == io.EOF && off < a.Size {
			return fmt.Errorf("%s: vault file ended at %d of %d bytes", vp, off, a.Size)
		}
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("%s: reading from the vault: %w", vp, rerr)
		}
		if n == 0 && rerr == nil {
			return fmt.Errorf("%s: short read from the vault at %d", vp, off)
		}
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Chmod(a.Mode & keepMode); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chtimes(tmp.Name(), a.Atime, a.Mtime); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), local); err != nil {
		return err
	}
	ok = true
	ex.res.Files++
	ex.res.Bytes += off
	return nil
}
