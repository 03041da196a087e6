package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/fs/core/rootsync"
)

// Commit: the working copy is serialised into one "tree" metadata object plus one "aux"
// object per changed aux table, and root r/<seq+1> = {seq, prev root hash, tree, aux} is
// created with a create-only Put. The anchor (seq, hash) in bbolt is the rollback check.
//
// What a root holds: directories, symlinks, and regular files with their last *sealed*
// content. A file whose only content is still in the spool (new and not yet sealed) is left
// out of the root, and a rewritten file appears with its previous sealed version, so a root
// never references anything that is not in the store.

func (f *FS) committer() {
	defer f.wg.Done()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.commitKick:
		}
		// Debounce: commit after CommitDelay without changes, or 15 CommitDelays after the
		// first one, so a long import writes a root now and then, not after every file.
		deadline := time.After(15 * f.opts.CommitDelay)
	wait:
		for {
			select {
			case <-f.ctx.Done():
				return
			case <-f.commitKick:
			case <-time.After(f.opts.CommitDelay):
				break wait
			case <-deadline:
				break wait
			}
		}
		if !f.pendingCommit() {
			continue
		}
		if err := f.commitNow(f.ctx); err != nil {
			if f.ctx.Err() != nil {
				return
			}
			f.log.Warn("core: commit failed; will retry", "err", err)
			time.AfterFunc(5*time.Second, f.kickCommit)
		}
	}
}

// snapshot builds the tree objects of the shards that changed since the last root (or have
// no object yet) and returns the locators of the unchanged ones. An empty tree in dirty means
// the shard has no inodes any more.
//
// Held inodes (unacked.go), regular files whose only content is an unsealed spool and files
// whose content uses a broken object (lost from the store, no local copy) are listed in held, each with the shard's tree object of the last root in prior, for
// applyHolds; keepFresh gets the chunks of their current content.
func (f *FS) snapshot(tx *bolt.Tx, holds map[Ino]bool, broken map[dedup.Locator]bool) (dirty map[uint64]*tree, keep []shardRef, hs holdSet, err error) {
	hs = holdSet{prior: map[uint64]dedup.Locator{}, keepFresh: map[dedup.Locator]bool{}}
	m := tx.Bucket(bMeta)
	next := getU64(tx, mNextIno)
	// The shards that hold inodes: one cursor Seek per shard, not a walk of every inode.
	present := map[uint64]bool{}
	c := tx.Bucket(bInodes).Cursor()
	for k, _ := c.First(); k != nil; {
		sh := be64u(k) / shardSize
		present[sh] = true
		if sh+1 > (1<<64-1)/shardSize {
			break
		}
		k, _ = c.Seek(be64((sh + 1) * shardSize))
	}
	dirty = map[uint64]*tree{}
	mc := m.Cursor()
	for k, _ := mc.Seek([]byte(mShDirty)); k != nil && bytes.HasPrefix(k, []byte(mShDirty)); k, _ = mc.Next() {
		if len(k) == len(mShDirty)+8 {
			dirty[be64u(k[len(mShDirty):])] = &tree{NextIno: next}
		}
	}
	for sh := range present {
		if dirty[sh] == nil {
			v := m.Get(shardKey(mShLoc, sh))
			if len(v) != 32 {
				dirty[sh] = &tree{NextIno: next}
				continue
			}
			var l dedup.Locator
			copy(l[:], v)
			keep = append(keep, shardRef{Shard: sh, Loc: l})
		}
	}
	if len(dirty) == 0 {
		return dirty, keep, hs, nil
	}
	omit := map[Ino]bool{}
	for sh, t := range dirty {
		lo, hi := be64(sh*shardSize), (sh+1)*shardSize
		xs := map[Ino][]xattr{}
		xc := tx.Bucket(bXattrs).Cursor()
		for k, v := xc.Seek(lo); k != nil && be64u(k[:8]) < hi; k, v = xc.Next() {
			x, err := f.decodeXattr(k, v)
			if err != nil {
				return nil, nil, hs, err
			}
			ino := Ino(be64u(k[:8]))
			xs[ino] = append(xs[ino], x)
		}
		ic := tx.Bucket(bInodes).Cursor()
		for k, _ := ic.Seek(lo); k != nil && be64u(k) < hi; k, _ = ic.Next() {
			ino := Ino(be64u(k))
			n, err := f.getInode(tx, ino)
			if err != nil {
				return nil, nil, hs, err
			}
			switch {
			case n.Nlink == 0:
				omit[ino] = true
				continue
			case n.isReg() && (holds[ino] || n.Spool != 0 && !n.HasRef || usesAny(&n, broken)):
				// Not a version anyone acknowledged, not sealed, or its object is lost:
				// the last root's version goes in its place (applyHolds).
				hs.held = append(hs.held, heldRef{shard: sh, ino: ino})
				if v := m.Get(shardKey(mShLoc, sh)); len(v) == 32 {
					var l dedup.Locator
					copy(l[:], v)
					hs.prior[sh] = l
				}
				heldFresh(&n, hs.keepFresh)
			case n.isReg() && n.HasRef:
				n.Size = n.Ref.Size()
			case n.isReg():
				n.Size = 0
			}
			n.Spool = 0
			t.Inodes = append(t.Inodes, treeInode{Ino: ino, Node: n, Xattrs: xs[ino]})
		}
	}
	// Directory entries live in the shard of the inode they name. An inode with one name
	// records it (Parent, Name): one lookup each, so the commit costs the dirty shards, not
	// the vault. Hard links (or a record whose hint is stale) need the walk of every entry.
	if ents, ok := f.shardDirents(tx, dirty); ok {
		for sh, t := range dirty {
			t.Dirents = ents[sh]
		}
		return dirty, keep, hs, nil
	}
	err = tx.Bucket(bDirents).ForEach(func(k, v []byte) error {
		de, err := f.openDirent(k, v)
		if err != nil {
			return err
		}
		if t := dirty[uint64(de.Ino)/shardSize]; t != nil && !omit[de.Ino] {
			t.Dirents = append(t.Dirents, treeDirent{Parent: Ino(be64u(k[:8])), Name: de.Name, Ino: de.Ino})
		}
		return nil
	})
	return dirty, keep, hs, err
}

// holdSet: what snapshot found held (see snapshot).
type holdSet struct {
	held      []heldRef
	prior     map[uint64]dedup.Locator
	keepFresh map[dedup.Locator]bool
}

// shardDirents finds the directory entries of the inodes in the dirty shards from each
// inode's own (Parent, Name); ok false when some inode has several names or a hint that does
// not match its entry.
func (f *FS) shardDirents(tx *bolt.Tx, dirty map[uint64]*tree) (map[uint64][]treeDirent, bool) {
	out := map[uint64][]treeDirent{}
	for sh, t := range dirty {
		for i := range t.Inodes {
			ti := &t.Inodes[i]
			if ti.Ino == RootIno {
				continue
			}
			if !ti.Node.isDir() && ti.Node.Nlink != 1 {
				return nil, false
			}
			de, found, err := f.getDirent(tx, ti.Node.Parent, ti.Node.Name)
			if err != nil || !found || de.Ino != ti.Ino {
				return nil, false
			}
			out[sh] = append(out[sh], treeDirent{Parent: ti.Node.Parent, Name: ti.Node.Name, Ino: ti.Ino})
		}
	}
	return out, true
}

func (f *FS) putMeta(ctx context.Context, kind string, plain []byte) (dedup.Locator, error) {
	obj, loc, err := dedup.SealMeta(f.keys.MetaKey, kind, plain)
	if err != nil {
		return loc, eio("sealing metadata", err)
	}
	// Meta objects are content-addressed: ErrExist (our own write whose answer was lost,
	// or the same bytes from elsewhere) is success. Transient failures are retried by the
	// store's retry decorator (backend/retry), the one retry layer.
	err = f.store.Put(ctx, dedup.MetaName(loc), bytes.NewReader(obj), int64(len(obj)))
	if err != nil && !errors.Is(err, backend.ErrExist) {
		return loc, eio("storing metadata", err)
	}
	return loc, nil
}

// commitNow writes a root for the current working copy if it changed since the last root
// (the root protocol: rootsync.Syncer.Commit; the working copy's side: workcopy.go).
//
// Files that use an object missing from the store with no local copy left are left at
// their last root's version (workcopy.go Restore): the root is written, and the error
// (a *leftOutError: EIO, rootsync.ErrMissing) names them.
func (f *FS) commitNow(ctx context.Context) error {
	if f.ro {
		return nil
	}
	f.commitMu.Lock()
	defer f.commitMu.Unlock()
	defer f.notePresence(ctx)
	f.mu.Lock()
	f.broken = nil
	f.commitGen++
	f.mu.Unlock()
	err := syncErr("committing a root", f.sync.Commit(ctx, f.wc()))
	f.mu.Lock()
	lo, msg := f.leftOut, f.leftOutMsg
	f.mu.Unlock()
	if err == nil && len(lo) > 0 {
		return &leftOutError{inos: lo, err: eio("committing a root", fmt.Errorf("%w; left at their last stored version: %s",
			rootsync.ErrMissing, strings.Join(msg, "; ")))}
	}
	return err
}

// leftOutError: the root was written without the new content of the files in inos (its
// object is missing from the store and no local copy is left).
type leftOutError struct {
	inos map[Ino]bool
	err  error
}

func (e *leftOutError) Error() string { return e.err.Error() }
func (e *leftOutError) Unwrap() error { return e.err }

// leftOutOnly is err unless it only says that files other than ino were left out.
func leftOutOnly(err error, ino Ino) error {
	var lo *leftOutError
	if errors.As(err, &lo) && !lo.inos[ino] {
		return nil
	}
	return err
}

// buildRoot stores the tree and aux objects of the working copy's next root on top of
// anchor a and returns the sealed root (nil: nothing changed since the last root).
func (f *FS) buildRoot(ctx context.Context, a rootsync.Anchor) (*rootsync.Candidate, error) {
	var (
		shards     map[uint64]*tree
		keepShards []shardRef
		chg        uint64
		dirtyAux   []*auxTable
		keepAux    []auxRef
		fresh      []string
		nothingNew bool
	)
	// Barrier: the snapshot below is a read transaction of committed state.
	f.mu.Lock()
	err := f.commitLocked()
	var holds map[Ino]bool
	if err == nil {
		holds, err = f.heldLocked()
	}
	broken := maps.Clone(f.broken)
	gen := f.commitGen
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var hs holdSet
	err = f.db.View(func(tx *bolt.Tx) error {
		chg = getU64(tx, mChg)
		if getU64(tx, mAnchorSeq) != a.Seq {
			return errnoErr(syscall.EIO, "the anchor moved during a commit")
		}
		if chg == getU64(tx, mCommitted) && a.Seq > 0 {
			nothingNew = true
			return nil
		}
		var err error
		if shards, keepShards, hs, err = f.snapshot(tx, holds, broken); err != nil {
			return err
		}
		dirty := map[string]bool{}
		c := tx.Bucket(bMeta).Cursor()
		for k, _ := c.Seek([]byte(mAuxDirty)); k != nil && bytes.HasPrefix(k, []byte(mAuxDirty)); k, _ = c.Next() {
			dirty[string(k[len(mAuxDirty):])] = true
		}
		for k, v := c.Seek([]byte(mAuxLoc)); k != nil && bytes.HasPrefix(k, []byte(mAuxLoc)); k, v = c.Next() {
			table := string(k[len(mAuxLoc):])
			if !dirty[table] && len(v) == 32 {
				var l dedup.Locator
				copy(l[:], v)
				keepAux = append(keepAux, auxRef{Table: table, Loc: l})
			}
		}
		for table := range dirty {
			a := &auxTable{Table: table} // a unit: "table#NN"
			if err := f.forAuxUnit(tx, table, func(k, v []byte) error {
				a.Entries = append(a.Entries, [2][]byte{k, v})
				return nil
			}); err != nil {
				return err
			}
			dirtyAux = append(dirtyAux, a)
		}
		return nil
	})
	if err != nil || nothingNew {
		return nil, asErrno(err)
	}
	f.mu.Lock()
	if f.leftOutGen != gen {
		// The first root this commitNow builds: the files left out are found anew (the
		// report of an earlier commit stays while nothing changed).
		f.leftOut, f.leftOutMsg, f.leftOutGen = nil, nil, gen
	}
	f.mu.Unlock()
	if err := f.applyHolds(ctx, shards, hs.held, hs.prior); err != nil {
		return nil, err
	}
	heldShards := map[uint64]bool{}
	for _, h := range hs.held {
		heldShards[h.shard] = true
	}
	f.db.View(func(tx *bolt.Tx) error {
		fresh = freshRefs(tx, shards)
		return nil
	})
	seq := a.Seq + 1
	root := &rootRec{Seq: seq, Prev: a.Hash, Time: time.Now().UnixNano(), Shards: keepShards, Aux: keepAux, Device: f.device(), Writer: f.writerID}
	newShards := map[uint64]*dedup.Locator{}
	for sh, t := range shards {
		newShards[sh] = nil
		if len(t.Inodes) == 0 {
			continue // the shard is empty now
		}
		loc, err := f.putMeta(ctx, "tree", encodeTree(t))
		if err != nil {
			return nil, err
		}
		newShards[sh] = &loc
		root.Shards = append(root.Shards, shardRef{Shard: sh, Loc: loc})
	}
	sort.Slice(root.Shards, func(i, j int) bool { return root.Shards[i].Shard < root.Shards[j].Shard })
	newLocs := map[string]*dedup.Locator{}
	for _, a := range dirtyAux {
		newLocs[a.Table] = nil
		if len(a.Entries) == 0 {
			continue
		}
		loc, err := f.putMeta(ctx, "aux", encodeAux(a))
		if err != nil {
			return nil, err
		}
		newLocs[a.Table] = &loc
		root.Aux = append(root.Aux, auxRef{Table: a.Table, Loc: loc})
	}
	obj, _, err := dedup.SealRoot(f.keys.MetaKey, seq, encodeRoot(root))
	if err != nil {
		return nil, eio("sealing root", err)
	}
	done := func(stored rootsync.Anchor) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		err := f.writeLocked(func(tx *bolt.Tx) error {
			if err := setAnchor(tx, stored); err != nil {
				return err
			}
			if err := putU64(tx, mCommitted, chg); err != nil {
				return err
			}
			m := tx.Bucket(bMeta)
			for sh, loc := range newShards {
				if loc == nil {
					m.Delete(shardKey(mShLoc, sh))
				} else if err := m.Put(shardKey(mShLoc, sh), loc[:]); err != nil {
					return err
				}
				// A shard with a held file stays dirty: the next root has its new version.
				if v := m.Get(shardKey(mShDirty, sh)); len(v) == 8 && be64u(v) <= chg && !heldShards[sh] {
					m.Delete(shardKey(mShDirty, sh))
				}
			}
			for table, loc := range newLocs {
				if loc == nil {
					m.Delete([]byte(mAuxLoc + table))
				} else if err := m.Put([]byte(mAuxLoc+table), loc[:]); err != nil {
					return err
				}
				if getU64(tx, mAuxDirty+table) <= chg {
					m.Delete([]byte(mAuxDirty + table))
				}
			}
			return clearFresh(tx, chg, hs.keepFresh)
		})
		if err != nil {
			return err
		}
		return f.commitLocked()
	}
	return &rootsync.Candidate{Obj: obj, Refs: fresh, Done: done}, nil
}

// setAnchor records a as this cache's anchor.
func setAnchor(tx *bolt.Tx, a rootsync.Anchor) error {
	if err := putU64(tx, mAnchorSeq, a.Seq); err != nil {
		return err
	}
	return tx.Bucket(bMeta).Put([]byte(mAnchorHash), a.Hash[:])
}
