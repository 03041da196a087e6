package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/maint"
	"github.com/imgfs/imgfs/fs/core"
)

// damagedObject is a content object check found corrupt or missing, with the files using it.
type damagedObject struct {
	loc   dedup.Locator
	size  int64 // plaintext size
	paths []string
	from  string // where the good copy came from, once repaired
}

// repairContent restores the corrupt or missing content objects of rep (SECURITY.md T18)
// from a copy whose SHA-256 matches the object's name: the read cache of this session's
// cache directory, or a file under fromDir that seals to the same object (the originals).
// The upload hashes what it sends, so only the exact object is ever stored under its
// name. Metadata objects are not repaired here. It prints one line per damaged object and
// returns how many it could not repair.
func repairContent(ctx context.Context, out io.Writer, s *session, rep *maint.Report, fromDir string) (int, error) {
	damaged := map[dedup.Locator]*damagedObject{}
	for _, p := range rep.Problems {
		if p.Kind != maint.Corrupt && p.Kind != maint.Missing {
			continue
		}
		if loc, err := dedup.ParseContentName(p.Name); err == nil {
			damaged[loc] = &damagedObject{loc: loc, size: -1}
		}
	}
	if len(damaged) == 0 {
		return 0, nil
	}
	fileSizes := map[int64]bool{} // sizes of the files that use a damaged chunk
	err := s.fs.ForEachContent(func(ino core.Ino, c dedup.Content) error {
		var p string
		for i := range c.Len() {
			d := damaged[c.ChunkLocator(i)]
			if d == nil {
				continue
			}
			d.size = c.ChunkSize(i)
			if p == "" {
				var err error
				if p, err = s.fs.Path(ino); err != nil {
					p = fmt.Sprintf("inode %d", ino)
				}
				fileSizes[c.Size()] = true
			}
			d.paths = append(d.paths, p)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("listing files: %w", err)
	}
	upload := func(d *damagedObject, obj io.ReaderAt, from string) error {
		_, err := dedup.UploadWith(ctx, s.store, d.loc, obj, dedup.ObjectSize(d.size),
			dedup.UploadOptions{Verify: true, Logger: cliLogger()})
		if err == nil {
			d.from = from
		}
		return err
	}

	// 1. The read cache (ciphertext exactly as once stored).
	for _, d := range damaged {
		p, ok := s.fs.CachedObject(d.loc)
		if !ok || d.size < 0 {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err == nil && n == dedup.ObjectSize(d.size) && dedup.Locator(h.Sum(nil)) == d.loc {
			if err := upload(d, f, "the cache"); err != nil {
				f.Close()
				return 0, fmt.Errorf("restoring %s: %w", dedup.ContentName(d.loc), err)
			}
		}
		f.Close()
	}

	// 2. Originals under fromDir: files of the size of a file that uses a damaged chunk are
	// chunked and sealed (convergent encryption gives the same objects for the same bytes);
	// a chunk is kept if its locator matches.
	if fromDir != "" {
		sizes := fileSizes
		chunker, err := dedup.NewChunker(s.keys.ConvergenceSecret)
		if err != nil {
			return 0, err
		}
		err = filepath.WalkDir(fromDir, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !e.Type().IsRegular() {
				return nil
			}
			info, err := e.Info()
			if err != nil || !sizes[info.Size()] {
				return nil
			}
			return repairFromFile(path, info.Size(), s, chunker, damaged, upload)
		})
		if err != nil {
			return 0, fmt.Errorf("searching %s: %w", fromDir, err)
		}
	}

	list := make([]*damagedObject, 0, len(damaged))
	for _, d := range damaged {
		list = append(list, d)
	}
	sort.Slice(list, func(a, b int) bool { return dedup.ContentName(list[a].loc) < dedup.ContentName(list[b].loc) })
	lost := 0
	for _, d := range list {
		name := dedup.ContentName(d.loc)
		switch {
		case d.from != "":
			fmt.Fprintf(out, "repaired %s from %s\n", name, d.from)
		case len(d.paths) == 0:
			lost++
			fmt.Fprintf(out, "lost %s: no good copy, and no file of the current tree uses it\n", name)
		default:
			lost++
			fmt.Fprintf(out, "lost %s: no good copy of %s (give the original files with --from DIR, or restore the object from a backup)\n",
				name, strings.Join(d.paths, ", "))
		}
	}
	return lost, nil
}

// repairFromFile chunks and seals the file at path and uploads the chunks that are damaged
// objects not yet repaired; other chunks are skipped. A file that is one chunk as a whole (a
// v1 file) is sealed whole too.
func repairFromFile(path string, size int64, s *session, chunker *dedup.Chunker, damaged map[dedup.Locator]*damagedObject,
	upload func(*damagedObject, io.ReaderAt, string) error) error {
	src, err := os.Open(path)
	if err != nil {
		return nil // unreadable candidates are skipped, not fatal
	}
	defer src.Close()
	try := func(r io.ReaderAt, n int64) error {
		tmp, err := os.CreateTemp("", "imgfs-repair-")
		if err != nil {
			return err
		}
		defer func() {
			tmp.Close()
			os.Remove(tmp.Name())
		}()
		ref, err := dedup.Seal(s.keys.ConvergenceSecret, r, n, tmp)
		if err != nil {
			return nil
		}
		d := damaged[ref.Locator]
		if d == nil || d.from != "" {
			return nil
		}
		if err := upload(d, tmp, path); err != nil {
			return fmt.Errorf("restoring %s from %s: %w", dedup.ContentName(d.loc), path, err)
		}
		return nil
	}
	if err := try(src, size); err != nil {
		return err
	}
	buf := make([]byte, dedup.ChunkMax)
	for off := int64(0); off < size; {
		n, err := src.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil && err != io.EOF {
			return nil
		}
		cut, _ := chunker.Cut(buf[:n], off+int64(n) == size)
		if cut == 0 {
			return nil // the file shrank meanwhile
		}
		if cut != int(size) {
			if err := try(bytes.NewReader(buf[:cut]), int64(cut)); err != nil {
				return err
			}
		}
		off += int64(cut)
	}
	return nil
}
