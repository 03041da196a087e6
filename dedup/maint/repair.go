package maint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// RepairOptions say where Repair finds good copies, and the files of the current tree.
type RepairOptions struct {
	// Files calls fn for every file of the current tree with its content and a function
	// that returns its path (asked only of files that use a damaged object).
	Files func(fn func(c dedup.Content, path func() string) error) error
	// Cached returns the read cache's copy of an object (its ciphertext as once stored).
	Cached func(dedup.Locator) (string, bool)
	// From is a folder of original files ("" = none).
	From   string
	Logger *slog.Logger
}

// Repaired is a damaged content object after Repair: From is where its good copy came from,
// "" when none was found; Paths are the files of the current tree that use it.
type Repaired struct {
	Name  string
	From  string
	Paths []string
}

// damagedObject is a content object check found corrupt or missing, with the files using it.
type damagedObject struct {
	loc   dedup.Locator
	size  int64 // plaintext size
	paths []string
	from  string // where the good copy came from, once repaired
}

// Repair restores the corrupt or missing content objects of rep (docs/cli.md, check
// --repair) from a copy whose SHA-256 matches the object's name: the read cache, or a file
// under o.From that seals to the same object (the originals). The upload hashes what it
// sends, so only the exact object is ever stored under its name. Metadata objects are not
// repaired here. It returns every damaged content object, sorted by name.
func Repair(ctx context.Context, store backend.Store, keys *keyring.Keys, rep *Report, o RepairOptions) ([]Repaired, error) {
	damaged := map[dedup.Locator]*damagedObject{}
	for _, p := range rep.Problems {
		if p.Kind != Corrupt && p.Kind != Missing {
			continue
		}
		if loc, err := dedup.ParseContentName(p.Name); err == nil {
			damaged[loc] = &damagedObject{loc: loc, size: -1}
		}
	}
	if len(damaged) == 0 {
		return nil, nil
	}
	fileSizes := map[int64]bool{} // sizes of the files that use a damaged chunk
	err := o.Files(func(c dedup.Content, path func() string) error {
		var p string
		for i := range c.Len() {
			d := damaged[c.ChunkLocator(i)]
			if d == nil {
				continue
			}
			d.size = c.Chunk(i).Size // the object (a piece uses part of it)
			if p == "" {
				p = path()
				fileSizes[c.Size()] = true
			}
			d.paths = append(d.paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing files: %w", err)
	}
	upload := func(d *damagedObject, obj io.ReaderAt, from string) error {
		_, err := dedup.UploadWith(ctx, store, d.loc, obj, dedup.ObjectSize(d.size),
			dedup.UploadOptions{Verify: true, Logger: o.Logger})
		if err == nil {
			d.from = from
		}
		return err
	}

	// 1. The read cache (ciphertext exactly as once stored).
	for _, d := range damaged {
		p, ok := o.Cached(d.loc)
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
				return nil, fmt.Errorf("restoring %s: %w", dedup.ContentName(d.loc), err)
			}
		}
		f.Close()
	}

	// 2. Originals under o.From: files of the size of a file that uses a damaged chunk are
	// chunked and sealed (convergent encryption gives the same objects for the same bytes);
	// a chunk is kept if its locator matches.
	if o.From != "" {
		sizes := fileSizes
		chunker, err := dedup.NewChunker(keys.ConvergenceSecret)
		if err != nil {
			return nil, err
		}
		err = filepath.WalkDir(o.From, func(path string, e fs.DirEntry, err error) error {
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
			return repairFromFile(path, info.Size(), keys.ConvergenceSecret, chunker, damaged, upload)
		})
		if err != nil {
			return nil, fmt.Errorf("searching %s: %w", o.From, err)
		}
	}

	out := make([]Repaired, 0, len(damaged))
	for _, d := range damaged {
		out = append(out, Repaired{Name: dedup.ContentName(d.loc), From: d.from, Paths: d.paths})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// repairFromFile chunks and seals the file at path and uploads the chunks that are damaged
// objects not yet repaired; other chunks are skipped. A file that is one chunk as a whole (a
// v1 file) is sealed whole too.
func repairFromFile(path string, size int64, secret keyring.Secret, chunker *dedup.Chunker, damaged map[dedup.Locator]*damagedObject,
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
		ref, err := dedup.Seal(secret, r, n, tmp)
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
