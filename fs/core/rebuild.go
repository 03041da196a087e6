package core

// Open-time work on the working copy (docs/core.md, "Open"): bring a fresh cache up from
// the store, check an existing one against the newest root, and recover after a crash.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// syncErr maps an error of the root protocol: rollback, conflicts and store failures are
// EIO; an errno the working copy raised (ENOSPC ...) passes.
func syncErr(what string, err error) error { return withErrno(what, err, localErrnos) }

// syncWithStore brings a fresh cache up from the store (trust on first use) and checks an
// existing cache's anchor against the store's newest root (docs/core.md "Open", check T15; the
// protocol: rootsync.Syncer.Start).
func (f *FS) syncWithStore(ctx context.Context) error {
	var inited, clean bool
	f.db.View(func(tx *bolt.Tx) error {
		inited = tx.Bucket(bMeta).Get([]byte(mInit)) != nil
		clean = getU64(tx, mChg) == getU64(tx, mCommitted) && tx.Bucket(bPending).Stats().KeyN == 0
		return nil
	})
	clean = clean || f.ro // a read-only cache has nothing of its own to keep
	if inited {
		return syncErr("opening", f.sync.Start(ctx, f.wc(), clean))
	}
	latest, found, err := f.latestRoot(ctx)
	if err != nil {
		return err
	}
	if found {
		return f.rebuild(ctx, latest)
	}
	return f.initEmpty()
}

func (f *FS) initEmpty() error {
	return asErrno(f.db.Update(func(tx *bolt.Tx) error {
		now := nowNs()
		root := inode{Mode: os.ModeDir | 0o755, Nlink: 2, Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()),
			Atime: now, Mtime: now, Ctime: now}
		if err := f.putInode(tx, RootIno, &root); err != nil {
			return err
		}
		if err := putU64(tx, mNextIno, uint64(RootIno)); err != nil {
			return err
		}
		if !f.ro {
			if err := putU64(tx, mChg, getU64(tx, mCommitted)+1); err != nil { // write r/1 soon
				return err
			}
		}
		return tx.Bucket(bMeta).Put([]byte(mInit), []byte{1})
	}))
}

// rebuild replaces the working copy with root seq from the store.
func (f *FS) rebuild(ctx context.Context, seq uint64) error {
	r, hash, err := f.loadRoot(ctx, seq)
	if err != nil {
		return err
	}
	t, err := f.loadTree(ctx, r)
	if err != nil {
		return err
	}
	var auxes []*auxTable
	for _, a := range r.Aux {
		plain, err := f.loadMeta(ctx, "aux", a.Loc)
		if err != nil {
			return err
		}
		at, err := decodeAux(plain)
		if _, _, ok := splitUnit(a.Table); err != nil || at.Table != a.Table || !ok {
			return errnoErr(syscall.EIO, "aux object %s is malformed", a.Loc)
		}
		auxes = append(auxes, at)
	}
	if err := checkTree(t); err != nil {
		return err
	}
	err = f.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bInodes, bDirents, bXattrs, bPending, bOrphans, bAux} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		var del [][]byte
		m.ForEach(func(k, _ []byte) error {
			if bytes.HasPrefix(k, []byte(mAuxLoc)) || bytes.HasPrefix(k, []byte(mAuxDirty)) ||
				bytes.HasPrefix(k, []byte(mShLoc)) || bytes.HasPrefix(k, []byte(mShDirty)) {
				del = append(del, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range del {
			m.Delete(k)
		}
		var inos []Ino
		types := make(map[Ino]os.FileMode, len(t.Inodes))
		for i := range t.Inodes {
			ti := &t.Inodes[i]
			inos = append(inos, ti.Ino)
			types[ti.Ino] = ti.Node.Mode.Type()
			if err := f.putInode(tx, ti.Ino, &ti.Node); err != nil {
				return err
			}
			for _, x := range ti.Xattrs {
				if err := f.putXattr(tx, ti.Ino, x.Name, x.Value); err != nil {
					return err
				}
			}
		}
		if err := f.putDirentsSorted(tx, t.Dirents, types); err != nil {
			return err
		}
		for _, a := range auxes {
			table, _, _ := splitUnit(a.Table)
			for _, kv := range a.Entries {
				if err := f.putAux(tx, table, kv[0], kv[1]); err != nil {
					return err
				}
			}
		}
		for _, a := range r.Aux {
			if err := m.Put([]byte(mAuxLoc+a.Table), a.Loc[:]); err != nil {
				return err
			}
		}
		// putInode/putDirent marked every shard dirty; the store already has them all.
		for _, s := range r.Shards {
			m.Delete(shardKey(mShDirty, s.Shard))
			if err := m.Put(shardKey(mShLoc, s.Shard), s.Loc[:]); err != nil {
				return err
			}
		}
		if err := ownCounter(tx, inos); err != nil {
			return err
		}
		if err := putU64(tx, mAnchorSeq, seq); err != nil {
			return err
		}
		if err := m.Put([]byte(mAnchorHash), hash[:]); err != nil {
			return err
		}
		if err := putU64(tx, mCommitted, getU64(tx, mChg)); err != nil {
			return err
		}
		return m.Put([]byte(mInit), []byte{1})
	})
	if err != nil {
		return asErrno(err)
	}
	f.log.Info("core: working copy loaded from the store", "root", seq)
	return nil
}

// recover runs at Open: drops orphans (unlinked while open at the crash), resumes journal
// records, deletes spool files no record points at (writes never flushed) and temp files.
func (f *FS) recover() error {
	keep := map[uint64]bool{}
	err := f.db.Update(func(tx *bolt.Tx) error {
		var orphans []Ino
		tx.Bucket(bOrphans).ForEach(func(k, _ []byte) error {
			orphans = append(orphans, Ino(be64u(k)))
			return nil
		})
		for _, ino := range orphans {
			n, err := f.getInode(tx, ino)
			if err == nil {
				if err := f.deleteInode(tx, ino, &n); err != nil {
					return err
				}
			}
			tx.Bucket(bOrphans).Delete(be64(uint64(ino)))
		}
		var drop []uint64
		err := tx.Bucket(bPending).ForEach(func(k, v []byte) error {
			id := be64u(k)
			rec, err := decodePending(v)
			if err != nil {
				drop = append(drop, id)
				return nil
			}
			n, err := f.getInode(tx, rec.Ino)
			if err != nil || n.Spool != id {
				drop = append(drop, id)
				return nil
			}
			if _, err := os.Stat(f.spoolPath(id)); err != nil {
				// The spool was lost (wiped cache): fall back to the last sealed version.
				f.log.Warn("core: spool file missing; file reverts to its last sealed version", "ino", rec.Ino)
				n.Spool, n.Size = 0, 0
				if n.HasRef {
					n.Size = n.Ref.Size()
				}
				drop = append(drop, id)
				return f.putInode(tx, rec.Ino, &n)
			}
			keep[id] = true
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range drop {
			if err := tx.Bucket(bPending).Delete(be64(id)); err != nil {
				return err
			}
		}
		return heldLeftover(tx)
	})
	if err != nil {
		return asErrno(err)
	}
	var maxID uint64
	ents, _ := os.ReadDir(filepath.Join(f.dir, "spool"))
	for _, e := range ents {
		id, err := strconv.ParseUint(e.Name(), 10, 64)
		if err == nil {
			maxID = max(maxID, id)
		}
		if err != nil || !keep[id] {
			os.Remove(filepath.Join(f.dir, "spool", e.Name()))
			continue
		}
		if info, err := e.Info(); err == nil {
			f.spoolUsed.Add(diskUsage(info))
		}
	}
	f.spoolSeq.Store(maxID)
	for id := range keep {
		f.spoolSeq.Store(max(f.spoolSeq.Load(), id))
		f.enqueueSeal(id)
	}
	tmps, _ := os.ReadDir(filepath.Join(f.dir, "tmp"))
	for _, e := range tmps {
		if strings.HasPrefix(e.Name(), "seal-") || strings.HasPrefix(e.Name(), "fetch-") {
			os.Remove(filepath.Join(f.dir, "tmp", e.Name()))
		}
	}
	return nil
}
