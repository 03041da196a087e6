package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"weak"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
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
func (f *FS) snapshot(tx *bolt.Tx) (dirty map[uint64]*tree, keep []shardRef, err error) {
	m := tx.Bucket(bMeta)
	next := getU64(tx, mNextIno)
	present := map[uint64]bool{}
	c := tx.Bucket(bInodes).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		present[be64u(k)/shardSize] = true
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
		return dirty, keep, nil
	}
	omit := map[Ino]bool{}
	for sh, t := range dirty {
		lo, hi := be64(sh*shardSize), (sh+1)*shardSize
		xs := map[Ino][]xattr{}
		xc := tx.Bucket(bXattrs).Cursor()
		for k, v := xc.Seek(lo); k != nil && be64u(k[:8]) < hi; k, v = xc.Next() {
			x, err := f.decodeXattr(k, v)
			if err != nil {
				return nil, nil, err
			}
			ino := Ino(be64u(k[:8]))
			xs[ino] = append(xs[ino], x)
		}
		ic := tx.Bucket(bInodes).Cursor()
		for k, _ := ic.Seek(lo); k != nil && be64u(k) < hi; k, _ = ic.Next() {
			ino := Ino(be64u(k))
			n, err := f.getInode(tx, ino)
			if err != nil {
				return nil, nil, err
			}
			switch {
			case n.Nlink == 0:
				omit[ino] = true
				continue
			case n.isReg() && n.Spool != 0 && !n.HasRef:
				omit[ino] = true
				continue
			case n.isReg() && n.HasRef:
				n.Size = n.Ref.Size()
			case n.isReg():
				n.Size = 0
			}
			n.Spool = 0
			t.Inodes = append(t.Inodes, treeInode{Ino: ino, Node: n, Xattrs: xs[ino]})
		}
	}
	// Directory entries live in the shard of the inode they name.
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
	return dirty, keep, err
}

func (f *FS) putMeta(ctx context.Context, kind string, plain []byte) (dedup.Locator, error) {
	obj, loc, err := dedup.SealMeta(f.keys.MetaKey, kind, plain)
	if err != nil {
		return loc, eio("sealing metadata", err)
	}
	// Meta objects are content-addressed: ErrExist (our own write whose answer was lost,
	// or the same bytes from elsewhere) is success.
	err = f.retryStore(ctx, "storing metadata", func() error {
		err := f.store.Put(ctx, dedup.MetaName(loc), bytes.NewReader(obj), int64(len(obj)))
		if errors.Is(err, backend.ErrExist) {
			return nil
		}
		return err
	})
	if err != nil {
		return loc, eio("storing metadata", err)
	}
	return loc, nil
}

// Core-level retries of store writes (T38): the retry decorator cannot replay a streamed
// content body and reports ErrExist after a root Put whose answer was lost; the callers
// here retry the whole operation. Vars for tests.
var (
	storeAttempts  = 5
	storeBaseDelay = 100 * time.Millisecond
	storeMaxDelay  = 2 * time.Second
	// storeRetryFor: no new attempt starts after this long (each attempt has the retry
	// decorator's deadlines), so a hanging store gives EIO in bounded time.
	storeRetryFor = 30 * time.Second
)

// isTransient reports whether a store error may go away by retrying.
func isTransient(err error) bool {
	if err == nil || errors.Is(err, backend.ErrExist) || errors.Is(err, backend.ErrNotExist) ||
		errors.Is(err, context.Canceled) || backend.IsPermanent(err) {
		return false
	}
	if backend.IsTransient(err) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retryStore runs op until it succeeds, fails for good, or storeAttempts transient failures,
// with exponential backoff, within ctx.
func (f *FS) retryStore(ctx context.Context, what string, op func() error) error {
	delay := storeBaseDelay
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || !isTransient(err) || attempt >= storeAttempts || ctx.Err() != nil ||
			time.Since(start)+delay > storeRetryFor {
			if err != nil && attempt > 1 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return err
		}
		f.log.Info("core: store write failed; retrying", "op", what, "attempt", attempt, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		delay = min(2*delay, storeMaxDelay)
	}
}

// rootTries remembers, per FS, the hashes of root objects tried at the pending sequence
// number whose Put failed: such a Put may have landed with its answer lost. Weak keys: an
// entry left by a closed FS does not keep it alive.
var (
	rootTriesMu sync.Mutex
	rootTries   = map[weak.Pointer[FS]]rootTry{}
)

type rootTry struct {
	seq    uint64
	hashes []dedup.Locator
}

func (f *FS) triedRoot(seq uint64, h dedup.Locator) bool {
	rootTriesMu.Lock()
	defer rootTriesMu.Unlock()
	t := rootTries[weak.Make(f)]
	return t.seq == seq && slices.Contains(t.hashes, h)
}

func (f *FS) noteRootTry(seq uint64, h dedup.Locator, failed bool) {
	rootTriesMu.Lock()
	defer rootTriesMu.Unlock()
	if !failed {
		delete(rootTries, weak.Make(f))
		return
	}
	t := rootTries[weak.Make(f)]
	if t.seq != seq {
		t = rootTry{seq: seq}
	}
	if len(t.hashes) < 64 {
		t.hashes = append(t.hashes, h)
	}
	rootTries[weak.Make(f)] = t
}

// errOwnRoot: the root at the pending sequence number is one this mount wrote earlier
// (its answer was lost); the anchor moved to it and the commit goes on at the next number.
var errOwnRoot = errors.New("own earlier root found")

// putRoot creates r/<seq> with obj. A Put that fails with ErrExist (create-only) may be our
// own write whose answer was lost: the stored object is read back and compared.
func (f *FS) putRoot(ctx context.Context, seq uint64, obj []byte) error {
	name := dedup.RootName(seq)
	h := dedup.Hash(obj)
	err := f.retryStore(ctx, "storing root", func() error {
		err := f.store.Put(ctx, name, bytes.NewReader(obj), int64(len(obj)))
		if !errors.Is(err, backend.ErrExist) {
			return err
		}
		stored, rerr := readAll(ctx, f.store, name, 16<<20)
		if rerr != nil {
			if errors.Is(rerr, backend.ErrNotExist) {
				return backend.Transient(fmt.Errorf("root %d exists but cannot be read yet", seq))
			}
			return fmt.Errorf("reading back root %d: %w", seq, rerr)
		}
		sh := dedup.Hash(stored)
		switch {
		case bytes.Equal(stored, obj):
			f.log.Info("core: root already stored (a lost answer); accepted after reading it back", "root", seq)
			return nil
		case f.triedRoot(seq, sh):
			return f.adoptOwnRoot(seq, sh)
		}
		return fmt.Errorf("core: root %d: %w (%w)", seq, ErrConflict, syscall.EIO)
	})
	if err == nil || errors.Is(err, errOwnRoot) {
		f.noteRootTry(seq, h, false)
		return err
	}
	if !errors.Is(err, ErrConflict) {
		f.noteRootTry(seq, h, true)
	}
	return err
}

// adoptOwnRoot moves the anchor to root seq, which this mount wrote in an earlier attempt
// whose answer was lost. Its shards stay marked dirty, so the next root rewrites them.
func (f *FS) adoptOwnRoot(seq uint64, h dedup.Locator) error {
	f.log.Warn("core: an earlier root write of this mount landed although its answer was lost; continuing after it", "root", seq)
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.writeLocked(func(tx *bolt.Tx) error {
		if err := putU64(tx, mAnchorSeq, seq); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put([]byte(mAnchorHash), h[:])
	})
	if err != nil {
		return err
	}
	return errOwnRoot
}

// commitNow writes a root for the current working copy if it changed since the last root.
func (f *FS) commitNow(ctx context.Context) error {
	if f.ro {
		return nil
	}
	f.commitMu.Lock()
	defer f.commitMu.Unlock()
	defer f.notePresence(ctx)
	for i := 0; ; i++ {
		err := f.commitOnce(ctx)
		if errors.Is(err, ErrConflict) && i < 10 {
			// Another device wrote the next root first: merge it, then commit on top.
			if merr := f.catchUp(ctx); merr != nil {
				return merr
			}
			continue
		}
		if !errors.Is(err, errOwnRoot) {
			return err
		}
		if i >= 3 {
			return eio("storing root", err)
		}
	}
}

func (f *FS) commitOnce(ctx context.Context) error {
	var (
		shards     map[uint64]*tree
		keepShards []shardRef
		chg, seq   uint64
		prev       dedup.Locator
		dirtyAux   []*auxTable
		keepAux    []auxRef
		nothingNew bool
	)
	// Barrier: the snapshot below is a read transaction of committed state.
	f.mu.Lock()
	err := f.commitLocked()
	f.mu.Unlock()
	if err != nil {
		return err
	}
	err = f.db.View(func(tx *bolt.Tx) error {
		chg = getU64(tx, mChg)
		anchor := getU64(tx, mAnchorSeq)
		if chg == getU64(tx, mCommitted) && anchor > 0 {
			nothingNew = true
			return nil
		}
		seq = anchor + 1
		copy(prev[:], tx.Bucket(bMeta).Get([]byte(mAnchorHash)))
		var err error
		if shards, keepShards, err = f.snapshot(tx); err != nil {
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
		return asErrno(err)
	}
	root := &rootRec{Seq: seq, Prev: prev, Time: time.Now().UnixNano(), Shards: keepShards, Aux: keepAux, Device: f.device(), Writer: f.writerID}
	newShards := map[uint64]*dedup.Locator{}
	for sh, t := range shards {
		newShards[sh] = nil
		if len(t.Inodes) == 0 {
			continue // the shard is empty now
		}
		loc, err := f.putMeta(ctx, "tree", encodeTree(t))
		if err != nil {
			return err
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
			return err
		}
		newLocs[a.Table] = &loc
		root.Aux = append(root.Aux, auxRef{Table: a.Table, Loc: loc})
	}
	obj, hash, err := dedup.SealRoot(f.keys.MetaKey, seq, encodeRoot(root))
	if err != nil {
		return eio("sealing root", err)
	}
	if err := f.putRoot(ctx, seq, obj); err != nil {
		if errors.Is(err, errOwnRoot) || errors.Is(err, ErrConflict) {
			return err
		}
		return eio("storing root", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	err = f.writeLocked(func(tx *bolt.Tx) error {
		if err := putU64(tx, mAnchorSeq, seq); err != nil {
			return err
		}
		if err := tx.Bucket(bMeta).Put([]byte(mAnchorHash), hash[:]); err != nil {
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
			if v := m.Get(shardKey(mShDirty, sh)); len(v) == 8 && be64u(v) <= chg {
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
		return nil
	})
	if err != nil {
		return err
	}
	return f.commitLocked()
}

// ---- reading roots ----

func readAll(ctx context.Context, store backend.Store, name string, limit int64) ([]byte, error) {
	rc, err := store.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("object %s is larger than %d bytes", name, limit)
	}
	return b, nil
}

// latestRoot returns the highest root sequence number in the store (ok false: none).
func (f *FS) latestRoot(ctx context.Context) (uint64, bool, error) {
	var max uint64
	var ok bool
	err := f.store.List(ctx, "r/", func(info backend.Info) error {
		if seq, err := dedup.ParseRootName(info.Name); err == nil && (!ok || seq > max) {
			max, ok = seq, true
		}
		return nil
	})
	if err != nil {
		return 0, false, eio("listing roots", err)
	}
	return max, ok, nil
}

func (f *FS) loadRoot(ctx context.Context, seq uint64) (*rootRec, dedup.Locator, error) {
	obj, err := readAll(ctx, f.store, dedup.RootName(seq), 16<<20)
	if err != nil {
		return nil, dedup.Locator{}, eio(fmt.Sprintf("reading root %d", seq), err)
	}
	plain, err := dedup.OpenRoot(f.keys.MetaKey, seq, obj)
	if err != nil {
		return nil, dedup.Locator{}, eio(fmt.Sprintf("root %d", seq), err)
	}
	r, err := decodeRoot(plain)
	if err != nil || r.Seq != seq {
		return nil, dedup.Locator{}, errnoErr(syscall.EIO, "root %d is malformed", seq)
	}
	return r, dedup.Hash(obj), nil
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

func rollback(format string, args ...any) error {
	return fmt.Errorf("core: %w: "+format+" (%w)", append([]any{ErrRollback}, append(args, syscall.EIO)...)...)
}

// syncWithStore brings a fresh cache up from the store (trust on first use) and checks an
// existing cache's anchor against the store's newest root (SECURITY.md 5.3, T15).
func (f *FS) syncWithStore(ctx context.Context) error {
	var inited, clean bool
	var anchorSeq uint64
	var anchorHash dedup.Locator
	f.db.View(func(tx *bolt.Tx) error {
		inited = tx.Bucket(bMeta).Get([]byte(mInit)) != nil
		anchorSeq = getU64(tx, mAnchorSeq)
		copy(anchorHash[:], tx.Bucket(bMeta).Get([]byte(mAnchorHash)))
		clean = getU64(tx, mChg) == getU64(tx, mCommitted) && tx.Bucket(bPending).Stats().KeyN == 0
		return nil
	})
	clean = clean || f.ro // a read-only cache has nothing of its own to keep
	latest, found, err := f.latestRoot(ctx)
	if err != nil {
		return err
	}
	if !inited {
		if found {
			return f.rebuild(ctx, latest)
		}
		return f.initEmpty()
	}
	if anchorSeq == 0 { // this cache never committed: nothing to roll back to
		if !found {
			return nil
		}
		if anchorSeq, err = f.adoptOwnRoots(ctx, 0, latest); err != nil || latest == anchorSeq {
			return err
		}
		if clean {
			return f.rebuild(ctx, latest)
		}
		_, err := f.mergeNewer(ctx, latest)
		return err
	}
	if !found {
		return rollback("the store has no root, this cache saw root %d", anchorSeq)
	}
	if latest < anchorSeq {
		return rollback("the store's newest root is %d, this cache saw root %d", latest, anchorSeq)
	}
	// Walk back from the newest root to the anchor: every prev hash must chain to it.
	want := dedup.Locator{}
	for s := latest; ; s-- {
		r, h, err := f.loadRoot(ctx, s)
		if errors.Is(err, backend.ErrNotExist) && s > anchorSeq && s < latest && clean {
			// gc collected the roots between (docs/cli.md, gc: it keeps every root from the
			// oldest presence record's anchor; a read-only cache has none). The chain cannot
			// be checked any more; a cache with nothing of its own loads the newest root.
			f.log.Warn("core: roots between this cache's last root and the newest were removed by gc; loading the newest root without checking the chain to it",
				"cache_root", anchorSeq, "newest", latest)
			return f.rebuild(ctx, latest)
		}
		if err != nil {
			return err
		}
		if s != latest && h != want {
			return rollback("root %d does not chain to root %d", s, s+1)
		}
		if s == anchorSeq {
			if h != anchorHash {
				return rollback("root %d differs from the one this cache saw (fork)", s)
			}
			break
		}
		want = r.Prev
	}
	if anchorSeq, err = f.adoptOwnRoots(ctx, anchorSeq, latest); err != nil || latest == anchorSeq {
		return err
	}
	if clean {
		return f.rebuild(ctx, latest)
	}
	_, err = f.mergeNewer(ctx, latest)
	return err
}

// adoptOwnRoots moves the anchor over the roots after it that this cache wrote itself: a
// kill -9 after a root's Put but before the batch holding the anchor update was committed
// leaves them unknown to the db. The working copy already holds everything they hold (a
// root is built from committed state) and their shards stay marked dirty, so this is the
// lost-answer case of putRoot across a restart; merging with them would make conflict
// copies of the device's own files. It returns the new anchor.
func (f *FS) adoptOwnRoots(ctx context.Context, anchor, latest uint64) (uint64, error) {
	for len(f.writerID) > 0 && anchor < latest {
		r, h, err := f.loadRoot(ctx, anchor+1)
		if errors.Is(err, backend.ErrNotExist) {
			break // collected by gc: not one to continue after
		}
		if err != nil {
			return anchor, err
		}
		if !bytes.Equal(r.Writer, f.writerID) {
			break
		}
		err = f.db.Update(func(tx *bolt.Tx) error {
			if err := putU64(tx, mAnchorSeq, anchor+1); err != nil {
				return err
			}
			return tx.Bucket(bMeta).Put([]byte(mAnchorHash), h[:])
		})
		if err != nil {
			return anchor, localErr("moving the anchor", err)
		}
		anchor++
		f.log.Warn("core: a root this cache wrote before it stopped was not recorded in its db; continuing after it", "root", anchor)
	}
	return anchor, nil
}

// catchUp merges the roots other devices wrote after the anchor (checking their chain).
func (f *FS) catchUp(ctx context.Context) error {
	newest, err := f.nextRoots(ctx)
	if err != nil {
		return err
	}
	if newest == 0 {
		return nil
	}
	_, err = f.mergeNewer(ctx, newest)
	return err
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
		for i := range t.Inodes {
			ti := &t.Inodes[i]
			inos = append(inos, ti.Ino)
			if err := f.putInode(tx, ti.Ino, &ti.Node); err != nil {
				return err
			}
			for _, x := range ti.Xattrs {
				if err := f.putXattr(tx, ti.Ino, x.Name, x.Value); err != nil {
					return err
				}
			}
		}
		for _, d := range t.Dirents {
			n, err := f.getInode(tx, d.Ino)
			if err != nil {
				return err
			}
			if err := f.putDirent(tx, d.Parent, dirent{Name: d.Name, Ino: d.Ino, Mode: n.Mode.Type()}); err != nil {
				return err
			}
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
		return nil
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
