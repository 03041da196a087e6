package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs/core"
	"github.com/imgfs/imgfs/fs/transfer"
)

func init() {
	var cacheDir string
	var recursive bool
	cmd := &cobra.Command{
		Use:   "ls [--store URL] [-R] [PATH]",
		Short: "List a directory of the vault (like ls -l) without mounting it",
		Long: `Lists PATH inside the vault (default: the root) like ls -l: mode, links, size,
modification time, name (and -> target for symlinks). -R lists subdirectories too.
Opens the vault read-only; it works beside a running mount when given another --cache.`,
		Example: `  imgfs ls --store /mnt/nas/vault
  imgfs ls --store /mnt/nas/vault -R 2024/summer`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := "/"
			if len(args) == 1 {
				p = args[0]
			}
			s, err := openSession(cmd, cacheDir, true)
			if err != nil {
				return err
			}
			defer s.Close()
			return runLs(cmd.OutOrStdout(), s.fs, vaultPath(p), recursive)
		},
	}
	cmd.Flags().StringVar(&cacheDir, "cache", "", cacheFlagHelp)
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "list subdirectories recursively")
	rootCmd.AddCommand(cmd)
}

func runLs(w io.Writer, fsys *core.FS, p string, recursive bool) error {
	ino, err := fsys.Resolve(p)
	if err != nil {
		return transfer.PathError(p, err)
	}
	a, err := fsys.GetAttr(ino)
	if err != nil {
		return transfer.PathError(p, err)
	}
	if !a.Mode.IsDir() {
		return lsLine(w, fsys, a, path.Base(p))
	}
	return lsDir(w, fsys, ino, p, recursive, false)
}

func lsDir(w io.Writer, fsys *core.FS, ino core.Ino, p string, recursive, header bool) error {
	ents, err := fsys.ReadDir(ino)
	if err != nil {
		return transfer.PathError(p, err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	if header {
		fmt.Fprintf(w, "\n%s:\n", p)
	}
	var subdirs []core.DirEntry
	for _, e := range ents {
		a, err := fsys.GetAttr(e.Ino)
		if err != nil {
			return transfer.PathError(path.Join(p, e.Name), err)
		}
		if err := lsLine(w, fsys, a, e.Name); err != nil {
			return err
		}
		if a.Mode.IsDir() {
			subdirs = append(subdirs, e)
		}
	}
	if recursive {
		for _, d := range subdirs {
			if err := lsDir(w, fsys, d.Ino, path.Join(p, d.Name), true, true); err != nil {
				return err
			}
		}
	}
	return nil
}

func lsLine(w io.Writer, fsys *core.FS, a core.Attr, name string) error {
	mt := a.Mtime.Local()
	ts := mt.Format("Jan _2 15:04")
	if time.Since(mt) > 180*24*time.Hour || mt.After(time.Now().Add(time.Hour)) {
		ts = mt.Format("Jan _2  2006")
	}
	line := fmt.Sprintf("%s %3d %10d %s %s", modeString(a.Mode), a.Nlink, a.Size, ts, name)
	if a.Mode&os.ModeSymlink != 0 {
		t, err := fsys.Readlink(a.Ino)
		if err != nil {
			return transfer.PathError(name, err)
		}
		line += " -> " + t
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// modeString is ls -l's mode column (os.FileMode.String differs for special bits).
func modeString(m os.FileMode) string {
	b := []byte("----------")
	switch {
	case m.IsDir():
		b[0] = 'd'
	case m&os.ModeSymlink != 0:
		b[0] = 'l'
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if m&(1<<uint(8-i)) != 0 {
			b[i+1] = rwx[i]
		}
	}
	if m&os.ModeSetuid != 0 {
		b[3] = map[bool]byte{true: 's', false: 'S'}[b[3] == 'x']
	}
	if m&os.ModeSetgid != 0 {
		b[6] = map[bool]byte{true: 's', false: 'S'}[b[6] == 'x']
	}
	if m&os.ModeSticky != 0 {
		b[9] = map[bool]byte{true: 't', false: 'T'}[b[9] == 'x']
	}
	return string(b)
}
