package core

// Reading roots and their metadata objects from the store (docs/core.md, "Roots and
// metadata objects"): list, decrypt, decode and check.

import (
	"context"
	"fmt"
	"strconv"
	"syscall"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/fs/core/rootsync"
)

func readAll(ctx context.Context, store backend.Store, name string, limit int64) ([]byte, error) {
	return backend.ReadSmall(ctx, store, name, limit)
}

// latestRoot returns the highest root sequence number in the store (ok false: none).
func (f *FS) latestRoot(ctx context.Context) (uint64, bool, error) {
	seq, ok, err := f.sync.Latest(ctx)
	return seq, ok, eio("listing roots", err)
}

// openRoot decrypts and decodes the stored object of root seq.
func (f *FS) openRoot(seq uint64, obj []byte) (*rootRec, error) {
	plain, err := dedup.OpenRoot(f.keys.MetaKey, seq, obj)
	if err != nil {
		return nil, err
	}
	r, err := decodeRoot(plain)
	if err != nil || r.Seq != seq {
		return nil, fmt.Errorf("root %d is malformed", seq)
	}
	return r, nil
}

// rootHeader is openRoot for the root protocol.
func (f *FS) rootHeader(seq uint64, obj []byte) (rootsync.Header, error) {
	r, err := f.openRoot(seq, obj)
	if err != nil {
		return rootsync.Header{}, err
	}
	return rootsync.Header{Prev: r.Prev, Writer: r.Writer}, nil
}

func (f *FS) loadRoot(ctx context.Context, seq uint64) (*rootRec, dedup.Locator, error) {
	obj, h, err := f.sync.Read(ctx, seq)
	if err != nil {
		return nil, h, eio(fmt.Sprintf("reading root %d", seq), err)
	}
	r, err := f.openRoot(seq, obj)
	if err != nil {
		return nil, h, eio(fmt.Sprintf("root %d", seq), err)
	}
	return r, h, nil
}

func (f *FS) loadMeta(ctx context.Context, kind string, loc dedup.Locator) ([]byte, error) {
	obj, err := readAll(ctx, f.store, dedup.MetaName(loc), dedup.MaxMetaSize+(64<<20))
	if err != nil {
		return nil, eio("reading metadata "+loc.String(), err)
	}
	plain, err := dedup.OpenMeta(f.keys.MetaKey, kind, loc, obj)
	if err != nil {
		return nil, eio("metadata "+loc.String(), err)
	}
	return plain, nil
}

// loadTree reads every shard of root r and returns their union.
func (f *FS) loadTree(ctx context.Context, r *rootRec) (*tree, error) {
	all := &tree{}
	for _, s := range r.Shards {
		plain, err := f.loadMeta(ctx, "tree", s.Loc)
		if err != nil {
			return nil, err
		}
		t, err := decodeTree(plain)
		if err != nil {
			return nil, eio("tree "+s.Loc.String(), err)
		}
		for _, ti := range t.Inodes {
			if uint64(ti.Ino)/shardSize != s.Shard {
				return nil, errnoErr(syscall.EIO, "tree %s: inode %d outside its shard", s.Loc, ti.Ino)
			}
		}
		all.NextIno = max(all.NextIno, t.NextIno)
		all.Inodes = append(all.Inodes, t.Inodes...)
		all.Dirents = append(all.Dirents, t.Dirents...)
	}
	return all, nil
}

// checkTree rejects trees whose names and links do not form a directory tree.
func checkTree(t *tree) error {
	nodes := map[Ino]*inode{}
	for i := range t.Inodes {
		ti := &t.Inodes[i]
		if ti.Ino == 0 || nodes[ti.Ino] != nil {
			return errnoErr(syscall.EIO, "tree: bad or duplicate inode %d", ti.Ino)
		}
		nodes[ti.Ino] = &ti.Node
	}
	if r := nodes[RootIno]; r == nil || !r.isDir() {
		return errnoErr(syscall.EIO, "tree: no root directory")
	}
	seen := map[[2]string]bool{}
	for _, d := range t.Dirents {
		p, c := nodes[d.Parent], nodes[d.Ino]
		if p == nil || !p.isDir() || c == nil || d.Ino == RootIno || checkName(d.Name) != nil {
			return errnoErr(syscall.EIO, "tree: bad directory entry")
		}
		k := [2]string{strconv.FormatUint(uint64(d.Parent), 10), d.Name}
		if seen[k] {
			return errnoErr(syscall.EIO, "tree: duplicate directory entry")
		}
		seen[k] = true
	}
	return nil
}
