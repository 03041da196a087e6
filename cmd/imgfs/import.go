package main

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

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs/core"
)

func init() {
	var cacheDir string
	cmd := &cobra.Command{
		Use:   "import [--store URL] [--cache DIR] SRC DEST",
		Short: "Copy a local directory tree into the vault without mounting it",
		Long: `Copies the contents of the local directory SRC into the vault directory DEST (created
with its parents if missing), like cp -a SRC/. DEST: regular files byte for byte, permission
bits, modification times, symlinks (as links) and hard links; sockets, fifos and devices are
skipped with a warning. Existing vault files of the same name are replaced. If SRC is a
file, it is imported as DEST, or into DEST when DEST is a vault directory.
Returns once everything is sealed, stored and committed. Refuses to run while a writer
mount of the vault is running (exit 7).`,
		Example: `  imgfs import --store /mnt/nas/vault /media/card/DCIM 2024/card1
  imgfs import --store s3:https://s3.example.net/bucket/photos ~/Pictures /`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := os.Lstat(args[0])
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			if !st.IsDir() && !st.Mode().IsRegular() {
				return usageErrorf("source %s is neither a directory nor a regular file", args[0])
			}
			s, err := openSession(cmd, cacheDir, false)
			if err != nil {
				return err
			}
			res, err := runImport(cmd.Context(), cmd.ErrOrStderr(), s.fs, args[0], vaultPath(args[1]))
			if cerr := s.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("committing the import: %w", cerr)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d files (%d bytes), %d directories, %d symlinks, %d hard links into %s\n",
				res.files, res.bytes, res.dirs, res.symlinks, res.hardlinks, vaultPath(args[1]))
			return nil
		},
	}
	cmd.Flags().StringVar(&cacheDir, "cache", "", cacheFlagHelp)
	rootCmd.AddCommand(cmd)
}

type copyResult struct {
	files, dirs, symlinks, hardlinks, skipped int
	bytes                                     int64
}

// keepMode are the mode bits import and export carry over.
const keepMode = os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky

type dirAttr struct {
	ino   core.Ino
	mode  os.FileMode
	mtime time.Time
	atime time.Time
}

type importer struct {
	ctx    context.Context
	fsys   *core.FS
	warn   io.Writer
	prog   *progress
	buf    []byte
	res    copyResult
	links  map[[2]uint64]core.Ino // (dev, ino) of a local file with several links -> vault inode
	dirs   []dirAttr              // applied deepest first once the tree is in
	inodes map[string]core.Ino    // local directory -> vault inode
}

func runImport(ctx context.Context, warn io.Writer, fsys *core.FS, src, dest string) (copyResult, error) {
	im := &importer{ctx: ctx, fsys: fsys, warn: warn, buf: make([]byte, 1<<20),
		links: map[[2]uint64]core.Ino{}, inodes: map[string]core.Ino{}}
	st, err := os.Lstat(src)
	if err != nil {
		return im.res, err
	}
	var total int64 = -1
	if stderrIsTerminal() {
		total = treeBytes(src)
	}
	im.prog = newProgress(total, "importing", true)
	defer im.prog.Finish()

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
			im.res.dirs++
		case info.Mode().IsRegular():
			if err := im.file(p, info, parent, name); err != nil {
				return err
			}
		case info.Mode()&os.ModeSymlink != 0:
			if err := im.symlink(p, info, parent, name, vp); err != nil {
				return err
			}
		default:
			fmt.Fprintf(im.warn, "imgfs: warning: skipping %s (not a file, directory or symlink)\n", p)
			im.res.skipped++
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

func atimeOf(info fs.FileInfo) time.Time {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Atim.Sec, st.Atim.Nsec)
	}
	return info.ModTime()
}

// treeBytes sums the sizes of the regular files under p (for the progress bar).
func treeBytes(p string) int64 {
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
		return 0, vaultErr(vp, err)
	}
	a, err = im.fsys.Lookup(parent, name)
	if err != nil {
		return 0, vaultErr(vp, err)
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
		return vaultErr(vp, err)
	}
	if a.Mode.IsDir() {
		return fmt.Errorf("%s: is a directory in the vault", vp)
	}
	if err := im.fsys.Remove(parent, name, false); err != nil {
		return vaultErr(vp, err)
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
				return vaultErr(local, err)
			}
			im.res.hardlinks++
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
			return vaultErr(local, err)
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
			im.prog.Add(int64(n))
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
		return vaultErr(local, err)
	}
	ok = true
	if err := h.Release(); err != nil {
		return fmt.Errorf("%s: %w", local, err)
	}
	if linkKey != nil {
		im.links[*linkKey] = a.Ino
	}
	im.res.files++
	im.res.bytes += off
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
		return vaultErr(vp, err)
	}
	mtime := info.ModTime()
	if _, err := im.fsys.SetAttr(a.Ino, core.SetAttrRequest{Mtime: &mtime}); err != nil {
		return vaultErr(vp, err)
	}
	im.res.symlinks++
	return nil
}
