package core

import (
	"context"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/fs/core/rootsync"
)

// The working copy as the root protocol's rootsync.Local: the protocol (commit, fetch,
// merge, refresh) is in rootsync; what it commits and merges into is here and in
// commit.go (buildRoot, rebuild) and merge.go (mergeNewer).

type workCopy struct{ f *FS }

func (f *FS) wc() workCopy { return workCopy{f} }

func (w workCopy) Anchor() rootsync.Anchor {
	var a rootsync.Anchor
	w.f.view(func(tx *bolt.Tx) error {
		a.Seq = getU64(tx, mAnchorSeq)
		copy(a.Hash[:], tx.Bucket(bMeta).Get([]byte(mAnchorHash)))
		return nil
	})
	return a
}

func (w workCopy) Build(ctx context.Context, a rootsync.Anchor) (*rootsync.Candidate, error) {
	return w.f.buildRoot(ctx, a)
}

func (w workCopy) Merge(ctx context.Context, seq uint64) error {
	_, err := w.f.mergeNewer(ctx, seq)
	return err
}

func (w workCopy) Rebuild(ctx context.Context, seq uint64) error { return w.f.rebuild(ctx, seq) }

// Adopt moves the anchor to a root this cache wrote itself. Its shards stay marked dirty,
// so the next root rewrites them.
func (w workCopy) Adopt(a rootsync.Anchor) error {
	f := w.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writeLocked(func(tx *bolt.Tx) error { return setAnchor(tx, a) }); err != nil {
		return err
	}
	return f.commitLocked()
}

// Restore uploads content object name again from the read cache's copy (the ciphertext
// this cache uploaded, or fetched). Without one the object is lost to this device too: the
// files that use it are left out of the root being built (at their last root's version,
// snapshot), so one lost object does not keep every other change from the store; commitNow
// reports them (docs/core.md, "Several devices").
func (w workCopy) Restore(ctx context.Context, name string) error {
	f := w.f
	loc, err := dedup.ParseContentName(name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, rootsync.ErrMissing)
	}
	p, ok := f.CachedObject(loc)
	if !ok {
		inos := f.usersOfInos(loc)
		paths := f.pathsOf(inos)
		f.mu.Lock()
		if f.broken == nil {
			f.broken = map[dedup.Locator]bool{}
		}
		if f.leftOut == nil {
			f.leftOut = map[Ino]bool{}
		}
		f.broken[loc] = true
		for _, ino := range inos {
			f.leftOut[ino] = true
		}
		f.leftOutMsg = append(f.leftOutMsg, fmt.Sprintf("%s (object %s)", paths, name))
		f.mu.Unlock()
		f.log.Error("core: an object of these files is missing from the store and this cache has no copy of it; they stay at their last stored version until written again",
			"files", paths, "object", name)
		return fmt.Errorf("%s: %w", name, rootsync.ErrLeftOut)
	}
	file, err := os.Open(p)
	if err != nil {
		return localErr("opening cached object", err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return localErr("opening cached object", err)
	}
	// UploadWith hashes the copy while uploading and refuses one that does not match.
	if _, err := dedup.UploadWith(ctx, f.store, loc, file, st.Size(), dedup.UploadOptions{Verify: f.verifyMode(), Logger: f.log}); err != nil {
		return eio("uploading a missing object again", err)
	}
	f.log.Warn("core: an object the next root references had gone from the store; uploaded it again from the cache", "object", name)
	return nil
}

// usersOfInos lists the inodes whose content uses loc.
func (f *FS) usersOfInos(loc dedup.Locator) []Ino {
	var out []Ino
	f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bInodes).ForEach(func(k, _ []byte) error {
			n, err := f.getInode(tx, Ino(be64u(k)))
			if err != nil || !n.HasRef {
				return nil
			}
			for i := 0; i < n.Ref.Len(); i++ {
				if n.Ref.ChunkLocator(i) == loc {
					out = append(out, Ino(be64u(k)))
					break
				}
			}
			return nil
		})
	})
	return out
}

// pathsOf names inodes for an error message (names of files stay local).
func (f *FS) pathsOf(out []Ino) string {
	paths := ""
	for i, ino := range out {
		if i == 5 {
			paths += ", ..."
			break
		}
		if i > 0 {
			paths += ", "
		}
		p, err := f.Path(ino)
		if err != nil {
			p = fmt.Sprintf("inode %d", ino)
		}
		paths += p
	}
	return paths
}

// Fresh objects: content objects uploaded since the last root are recorded in the meta
// bucket (mFresh + locator = the change counter when sealed) until a root that holds them
// is stored; the commit checks that they are still in the store (rootsync.Candidate.Refs).
const mFresh = "fresh/"

// noteFresh records the chunks of c as uploaded since the last root (inside the sealer's
// batch transaction, so it is journaled with the seal swap).
func noteFresh(tx *bolt.Tx, c dedup.Content) error {
	chg := be64(getU64(tx, mChg))
	for i := 0; i < c.Len(); i++ {
		l := c.ChunkLocator(i)
		if err := bput(tx, bMeta, append([]byte(mFresh), l[:]...), chg); err != nil { // journaled like the swap
			return err
		}
	}
	return nil
}

// freshRefs lists the store names of the fresh objects that inodes of the dirty shards
// reference.
func freshRefs(tx *bolt.Tx, shards map[uint64]*tree) []string {
	m := tx.Bucket(bMeta)
	if k, _ := m.Cursor().Seek([]byte(mFresh)); k == nil || len(k) < len(mFresh) || string(k[:len(mFresh)]) != mFresh {
		return nil
	}
	seen := map[dedup.Locator]bool{}
	var out []string
	for _, t := range shards {
		for i := range t.Inodes {
			n := &t.Inodes[i].Node
			if !n.HasRef {
				continue
			}
			for j := 0; j < n.Ref.Len(); j++ {
				l := n.Ref.ChunkLocator(j)
				if !seen[l] && m.Get(append([]byte(mFresh), l[:]...)) != nil {
					seen[l] = true
					out = append(out, dedup.ContentName(l))
				}
			}
		}
	}
	return out
}

// clearFresh forgets the fresh objects recorded up to change chg (a root holds them now),
// but those in keep (content of held files, which the root does not hold yet).
func clearFresh(tx *bolt.Tx, chg uint64, keep map[dedup.Locator]bool) error {
	m := tx.Bucket(bMeta)
	var del [][]byte
	c := m.Cursor()
	for k, v := c.Seek([]byte(mFresh)); k != nil && len(k) == len(mFresh)+32 && string(k[:len(mFresh)]) == mFresh; k, v = c.Next() {
		var l dedup.Locator
		copy(l[:], k[len(mFresh):])
		if (len(v) != 8 || be64u(v) <= chg) && !keep[l] {
			del = append(del, append([]byte(nil), k...))
		}
	}
	for _, k := range del {
		if err := m.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
