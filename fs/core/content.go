package core

// Content identity: what other layers (the indexer, gc, check) ask of files' sealed content.

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/dedup"
)

// ContentID returns the ID of ino's sealed content (dedup.Content.ID: the locator of a
// one-chunk file); ok is false while the file has unsealed changes (or is not a regular
// file). Equal IDs mean byte-identical files.
func (f *FS) ContentID(ino Ino) (id [32]byte, ok bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err = f.viewLocked(func(tx *bolt.Tx) error {
		n, err := f.getInode(tx, ino)
		if err != nil {
			return err
		}
		if n.isReg() && n.HasRef && n.Spool == 0 && !f.openDirty(ino) {
			id, ok = n.Ref.ID(), true
		}
		return nil
	})
	return id, ok, err
}

// openDirty reports unflushed writes (f.mu held; reads the overlay without of.mu).
func (f *FS) openDirty(ino Ino) bool {
	of := f.open[ino]
	if of == nil {
		return false
	}
	of.amu.Lock()
	defer of.amu.Unlock()
	return of.overlay_ && of.dirtyHint
}

// ForEachFile calls fn for every regular file whose content is sealed (reindexing), with
// its ContentID. The list is taken first and fn runs with no lock held, so it may call any
// FS method.
func (f *FS) ForEachFile(fn func(ino Ino, id [32]byte) error) error {
	return f.ForEachContent(func(ino Ino, c dedup.Content) error { return fn(ino, c.ID()) })
}

// ForEachContent calls fn for every regular file whose content is sealed, with its chunk
// list (check, repair), like ForEachFile.
func (f *FS) ForEachContent(fn func(ino Ino, c dedup.Content) error) error {
	type file struct {
		ino Ino
		id  dedup.Content
	}
	var files []file
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bInodes).ForEach(func(k, v []byte) error {
			ino := Ino(be64u(k))
			n, err := f.getInode(tx, ino)
			if err != nil {
				return err
			}
			if n.isReg() && n.HasRef && n.Spool == 0 && n.Nlink > 0 {
				files = append(files, file{ino, n.Ref})
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, fl := range files {
		if err := fn(fl.ino, fl.id); err != nil {
			return err
		}
	}
	return nil
}

// ReferencedObjects returns the store names of every object the current root references
// (content, metadata, the root itself), plus content that the local working copy references
// but has not committed yet (also the bases of journalled spools): the live set for check
// and gc. Content means every chunk of every chunk list.
func (f *FS) ReferencedObjects(ctx context.Context) (map[string]bool, error) {
	live := map[string]bool{}
	var anchor uint64
	err := f.view(func(tx *bolt.Tx) error {
		anchor = getU64(tx, mAnchorSeq)
		err := tx.Bucket(bInodes).ForEach(func(k, v []byte) error {
			n, err := f.getInode(tx, Ino(be64u(k)))
			if err != nil {
				return err
			}
			if n.HasRef {
				addChunks(live, n.Ref)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bPending).ForEach(func(k, v []byte) error {
			if rec, err := decodePending(v); err == nil {
				addChunks(live, rec.Base)
			}
			return nil
		})
	})
	if err != nil || anchor == 0 {
		return live, err
	}
	r, _, err := f.loadRoot(ctx, anchor)
	if err != nil {
		return nil, err
	}
	live[dedup.RootName(anchor)] = true
	for _, s := range r.Shards {
		live[dedup.MetaName(s.Loc)] = true
	}
	for _, a := range r.Aux {
		live[dedup.MetaName(a.Loc)] = true
	}
	t, err := f.loadTree(ctx, r)
	if err != nil {
		return nil, err
	}
	for _, ti := range t.Inodes {
		if ti.Node.HasRef {
			addChunks(live, ti.Node.Ref)
		}
	}
	return live, nil
}

func addChunks(live map[string]bool, c dedup.Content) {
	for i := range c.Len() {
		live[dedup.ContentName(c.ChunkLocator(i))] = true
	}
}
