package core

import (
	"bytes"
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/dedup"
)

// Unacknowledged content and roots (docs/core.md, "Several devices"): a root holds only a
// version of a file that some device acknowledged (close, fsync) or the version of the last
// root. The kernel sends open(O_TRUNC) as OPEN then SETATTR size 0 (bazil does not offer
// atomic O_TRUNC), so the truncate is recorded, and sealed, long before the writes that
// follow are closed; a new file exists empty from its create on. Neither state is a version
// anyone acknowledged, and a root written meanwhile would show other devices an empty file.
//
// So such a file is *held*: from a create, or a truncate to 0 while the file is open, until
// a close or fsync of a writing handle (or the last release) acknowledges what is recorded,
// and then until that record is sealed. While held, and while a file's recorded content is
// not sealed and it has no sealed content at all, the commit writes the file's inode from
// the last root (the anchor's tree object of its shard) with its current name and
// metadata, or leaves the file out when the last root has no such file. The shard stays
// marked dirty, so the next root after the release has the acknowledged version.

// hold: ack is the spool id that a close or fsync acknowledged (0: none yet).
type hold struct{ ack uint64 }

// armHoldLocked starts holding ino (f.mu held).
func (f *FS) armHoldLocked(ino Ino) {
	if f.holds == nil {
		f.holds = map[Ino]*hold{}
	}
	f.holds[ino] = &hold{}
}

// ackHold is ackHoldLocked for callers without f.mu.
func (f *FS) ackHold(ino Ino) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ackHoldLocked(ino)
}

// ackHoldLocked: a close or fsync of a writing handle, or the last release, acknowledged
// what is recorded for ino (f.mu held). A recorded spool is held until it is sealed; with
// none, the hold ends and the file's shard is marked changed, so the next root has it.
func (f *FS) ackHoldLocked(ino Ino) error {
	h := f.holds[ino]
	if h == nil {
		return nil
	}
	var n inode
	err := f.viewLocked(func(tx *bolt.Tx) error {
		var err error
		n, err = f.getInode(tx, ino)
		return err
	})
	switch {
	case err != nil:
		delete(f.holds, ino) // deleted
		return nil
	case n.Spool != 0:
		h.ack = n.Spool
		return nil
	}
	delete(f.holds, ino)
	return f.update(func(tx *bolt.Tx) error { return markShard(tx, ino) })
}

// heldLocked ends the holds whose acknowledged spool is sealed (or whose file is gone) and
// returns the inodes still held (f.mu held; at the start of a commit).
func (f *FS) heldLocked() (map[Ino]bool, error) {
	out := map[Ino]bool{}
	if len(f.holds) == 0 {
		return out, nil
	}
	err := f.viewLocked(func(tx *bolt.Tx) error {
		for ino, h := range f.holds {
			n, err := f.getInode(tx, ino)
			if err != nil {
				delete(f.holds, ino)
				continue
			}
			if h.ack == 0 && f.open[ino] == nil && n.Spool != 0 {
				h.ack = n.Spool // released without an acknowledgement (safety net)
			}
			if h.ack != 0 && n.Spool == 0 || h.ack == 0 && f.open[ino] == nil {
				delete(f.holds, ino) // acknowledged and sealed: the root takes it now
				continue
			}
			out[ino] = true
		}
		return nil
	})
	return out, err
}

// heldRef is a held inode in a shard the commit writes.
type heldRef struct {
	shard uint64
	ino   Ino
}

// applyHolds replaces each held inode of the dirty shards by its version in the last root
// (prior: the shard's tree object of the anchor), keeping its current name and metadata,
// or drops it with its directory entries when the last root has no such file.
func (f *FS) applyHolds(ctx context.Context, shards map[uint64]*tree, held []heldRef, prior map[uint64]dedup.Locator) error {
	byShard := map[uint64]map[Ino]bool{}
	for _, h := range held {
		if byShard[h.shard] == nil {
			byShard[h.shard] = map[Ino]bool{}
		}
		byShard[h.shard][h.ino] = true
	}
	for sh, inos := range byShard {
		var old map[Ino]*inode
		if loc, ok := prior[sh]; ok {
			var err error
			if old, err = f.priorTree(ctx, loc); err != nil {
				return err
			}
		}
		t := shards[sh]
		drop := map[Ino]bool{}
		kept := t.Inodes[:0]
		for _, ti := range t.Inodes {
			if inos[ti.Ino] {
				p := old[ti.Ino]
				if p == nil || !p.isReg() {
					drop[ti.Ino] = true
					continue
				}
				ti.Node.HasRef, ti.Node.Ref, ti.Node.Size, ti.Node.Mtime = p.HasRef, p.Ref, p.Size, p.Mtime
			}
			kept = append(kept, ti)
		}
		t.Inodes = kept
		if len(drop) > 0 {
			ents := t.Dirents[:0]
			for _, d := range t.Dirents {
				if !drop[d.Ino] {
					ents = append(ents, d)
				}
			}
			t.Dirents = ents
		}
	}
	return nil
}

// heldFresh lists the chunks of held inodes' current content: the root does not reference
// them yet, so their fresh records stay (checked before the root that does).
func heldFresh(n *inode, keep map[dedup.Locator]bool) {
	if !n.HasRef {
		return
	}
	for i := 0; i < n.Ref.Len(); i++ {
		keep[n.Ref.ChunkLocator(i)] = true
	}
}

// heldLeftover: a shard that a root wrote with a held file stays marked dirty (at a change
// the root covered); after a restart the holds are gone, so the next root must take the
// shard as it is now: count a change (recover, writers only).
func heldLeftover(tx *bolt.Tx) error {
	committed := getU64(tx, mCommitted)
	c := tx.Bucket(bMeta).Cursor()
	for k, v := c.Seek([]byte(mShDirty)); k != nil && bytes.HasPrefix(k, []byte(mShDirty)); k, v = c.Next() {
		if len(v) == 8 && be64u(v) <= committed && committed == getU64(tx, mChg) {
			return change(tx)
		}
	}
	return nil
}

// usesAny says whether the sealed content of n uses one of the objects in set.
func usesAny(n *inode, set map[dedup.Locator]bool) bool {
	if !n.HasRef || len(set) == 0 {
		return false
	}
	for i := 0; i < n.Ref.Len(); i++ {
		if set[n.Ref.ChunkLocator(i)] {
			return true
		}
	}
	return false
}

// priorTree returns the inodes of tree object loc (a shard of the last root), from a small
// cache: a long import holds new files in the same shards commit after commit.
func (f *FS) priorTree(ctx context.Context, loc dedup.Locator) (map[Ino]*inode, error) {
	f.mu.Lock()
	old, ok := f.priorTrees[loc]
	f.mu.Unlock()
	if ok {
		return old, nil
	}
	plain, err := f.loadMeta(ctx, "tree", loc)
	if err != nil {
		return nil, err
	}
	pt, err := decodeTree(plain)
	if err != nil {
		return nil, eio("tree "+loc.String(), err)
	}
	old = map[Ino]*inode{}
	for i := range pt.Inodes {
		old[pt.Inodes[i].Ino] = &pt.Inodes[i].Node
	}
	f.mu.Lock()
	if f.priorTrees == nil || len(f.priorTrees) >= priorTreesKept {
		f.priorTrees = map[dedup.Locator]map[Ino]*inode{}
	}
	f.priorTrees[loc] = old
	f.mu.Unlock()
	return old, nil
}

const priorTreesKept = 8
