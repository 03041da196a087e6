package core

import (
	"context"
	"errors"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/dedup"
)

// Patches and compaction (docs/format.md §11.4, docs/core.md "Write path"): a small edit of
// a big sealed file is stored as pieces. The bytes the spool holds become one new small
// content object (a patch object), the untouched bytes around them stay where they are as
// slices of the old chunks, and the file's chunk list references both at once. An fsync then seals
// and uploads what changed (64 KiB spool blocks), not the multi-MiB chunk around it. Some
// time later the compactor re-chunks the pieces into content-defined chunks, so the
// settled state is what sealing the whole file would give (dedup, and chunk boundaries
// that do not fingerprint a file, hold for it).

// patchMaxBytes: a patch stores at most this many bytes (one object); more is a rewrite.
const patchMaxBytes = 4 << 20

// maxPieces: a list that would hold more pieces is re-chunked at once instead (a variable
// for tests).
var maxPieces = 256

// sealContent seals a recorded spool: as a patch when that stores much less than
// re-chunking would, else by re-chunking (rechunk, seal.go).
func (f *FS) sealContent(ctx context.Context, sp *spoolFile, rec pendingRec) (c dedup.Content, hit bool, err error) {
	held, err := sp.heldBlocks()
	if err != nil {
		return dedup.Content{}, false, localErr("reading spool", err)
	}
	rd := spoolReader{sp, rec.Size}
	limit := min(rec.BaseLen, rec.Size)
	if c, ok, hit, err := f.patch(ctx, rec.Base, rec.Size, limit, held, rd); ok || err != nil {
		return c, hit, err
	}
	return f.rechunk(ctx, rec.Base, rec.Size, limit, held, rd, f.newSealTap(rec))
}

// patch builds the new content as pieces: base bytes outside the held blocks, patch
// objects for the held blocks. ok is false when a patch does not fit (no base, a hole past
// the base that no block covers, too many bytes, or not cheaper than re-chunking by half). hit says the patch object was in the store already.
func (f *FS) patch(ctx context.Context, base dedup.Content, size, limit int64, held [][2]int64, rd spoolReader) (c dedup.Content, ok, hit bool, err error) {
	if base.Len() == 0 || len(held) == 0 && size == limit {
		return dedup.Content{}, false, false, nil
	}
	var runs [][2]int64 // byte ranges the spool holds, in order, clipped to the size
	var patchBytes int64
	for _, h := range held {
		lo, hi := h[0]*spoolBlock, min(h[1]*spoolBlock, size)
		if lo < hi {
			runs = append(runs, [2]int64{lo, hi})
			patchBytes += hi - lo
		}
	}
	if len(runs) == 0 || patchBytes > patchMaxBytes {
		return dedup.Content{}, false, false, nil // a truncation only, or a rewrite
	}
	covered := limit // bytes past the visible base must all be held (zeros have no object)
	for _, r := range runs {
		if r[1] <= covered {
			continue
		}
		if r[0] > covered {
			return dedup.Content{}, false, false, nil
		}
		covered = r[1]
	}
	if covered < size {
		return dedup.Content{}, false, false, nil
	}
	// What re-chunking would seal at least: every base entry a run touches, every piece,
	// the entry cut by a truncation or extended by an append, and the bytes past the base.
	offs := base.Offsets()
	var full int64
	for j := range base.Len() {
		lo, hi := offs[j], offs[j+1]
		t := hi > limit || (j == base.Len()-1 && size != hi) || base.IsPiece(j)
		for _, r := range runs {
			t = t || (r[0] < hi && r[1] > lo)
		}
		if t {
			full += hi - lo
		}
	}
	full += max(size-limit, 0)
	if 2*patchBytes > full {
		return dedup.Content{}, false, false, nil
	}
	// The base's last chunk ends where the file ended, not at a cut of the chunker: once
	// bytes follow it, it is a piece (compaction must chunk it again).
	if nb := base.Len(); size != offs[nb] && !base.IsPiece(nb-1) {
		base = base.Slice(0, nb-1).AppendPiece(base.Chunk(nb-1), 0, base.ChunkSize(nb-1))
	}
	if base.Pieces()+3*len(runs) > maxPieces { // each run adds itself and two cut neighbours at most
		return dedup.Content{}, false, false, nil
	}
	// One patch object holds every run, back to back (one PUT per fsync, not one per run:
	// a database commit writes a page and its header page).
	buf := getSealBuf(patchBytes)
	defer putSealBuf(buf)
	at := int64(0)
	for _, r := range runs {
		if err := readFullAt(rd, (*buf)[at:at+r[1]-r[0]], r[0]); err != nil {
			return dedup.Content{}, false, false, eio("reading spool", err)
		}
		at += r[1] - r[0]
	}
	ref, stored, err := f.sealObject(ctx, (*buf)[:patchBytes], true)
	if err != nil {
		return dedup.Content{}, false, false, err
	}
	var out dedup.Content
	pos := int64(0)
	at = 0
	for _, r := range runs {
		if r[0] > pos {
			out = out.AppendContent(base.Range(pos, r[0]))
		}
		out = out.AppendPiece(ref, at, r[1]-r[0])
		at += r[1] - r[0]
		pos = r[1]
	}
	if pos < limit {
		out = out.AppendContent(base.Range(pos, limit))
	}
	if out.Size() != size {
		return dedup.Content{}, false, false, eio("patching", errors.New("pieces do not add up to the file size"))
	}
	return out, true, !stored, nil
}

// compactor holds the files whose chunk lists have pieces, with the time to compact them.
type compactor struct {
	mu   sync.Mutex
	due  map[Ino]time.Time
	kick chan struct{}
}

// compactDelay is how long after a patch its file is compacted (Options.CompactDelay).
func (f *FS) compactDelay() time.Duration {
	if f.opts.CompactDelay == 0 {
		return 30 * time.Second
	}
	return f.opts.CompactDelay
}

// scheduleCompact marks ino for compaction after compactDelay, unless it is marked already
// (a file edited continuously is still compacted: the time is not pushed back).
func (f *FS) scheduleCompact(ino Ino) {
	if f.compactDelay() < 0 || f.ro {
		return
	}
	f.cmp.mu.Lock()
	if _, ok := f.cmp.due[ino]; !ok {
		f.cmp.due[ino] = time.Now().Add(f.compactDelay())
	}
	f.cmp.mu.Unlock()
	select {
	case f.cmp.kick <- struct{}{}:
	default:
	}
}

// compactLoop runs the compactions that are due, one at a time, at background priority.
func (f *FS) compactLoop() {
	defer f.wg.Done()
	background()
	for {
		now := time.Now()
		next := now.Add(time.Hour)
		var ready []Ino
		f.cmp.mu.Lock()
		for ino, t := range f.cmp.due {
			if !t.After(now) {
				ready = append(ready, ino)
				delete(f.cmp.due, ino)
			} else if t.Before(next) {
				next = t
			}
		}
		f.cmp.mu.Unlock()
		for _, ino := range ready {
			if f.ctx.Err() != nil {
				return
			}
			retry, err := f.compactIno(f.ctx, ino)
			if err != nil && f.ctx.Err() == nil {
				f.log.Warn("core: compacting a file failed; will retry", "ino", uint64(ino), "err", err)
			}
			if retry || err != nil {
				f.scheduleCompact(ino)
			}
		}
		if len(ready) > 0 {
			continue
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-f.ctx.Done():
			t.Stop()
			return
		case <-f.cmp.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// compactIno re-chunks the pieces of ino's sealed content into chunks and swaps the result
// in if the file did not change meanwhile; retry says it did (or is being written) and
// compaction should be tried again later.
func (f *FS) compactIno(ctx context.Context, ino Ino) (retry bool, err error) {
	var n inode
	f.mu.Lock()
	err = f.viewLocked(func(tx *bolt.Tx) error {
		var err error
		n, err = f.getInode(tx, ino)
		return err
	})
	f.mu.Unlock()
	if n.Spool != 0 && err == nil {
		return true, nil // a newer version is pending
	}
	old := n.Ref
	if err != nil || !n.HasRef || old.Pieces() == 0 {
		return false, f.unmarkCompact(ino) // gone, or re-chunked meanwhile
	}
	r := f.openContent(old)
	content, _, err := f.rechunk(ctx, old, old.Size(), old.Size(), nil, r, nil)
	r.Close()
	if err != nil {
		return false, err
	}
	// The new chunks may be stored unsynced (a background Put, durable.go): make them
	// durable before a record names them.
	if err := f.syncStore(ctx); err != nil {
		return false, eio("syncing the store", err)
	}
	// Swap under the open state's lock, so no write starts a spool over the old list while
	// we do; a spool with unrecorded writes over it keeps the old list (retry later).
	of := f.refOpen(ino)
	if of != nil {
		defer f.releaseOpen(of)
		of.mu.Lock()
		defer of.mu.Unlock()
		if of.sp != nil && !of.frozen {
			return true, nil
		}
	}
	swapped := false
	f.mu.Lock()
	err = f.writeLocked(func(tx *bolt.Tx) error {
		cur, err := f.getInode(tx, ino)
		if err != nil || cur.Spool != 0 || !cur.HasRef || cur.Ref != old {
			return nil
		}
		cur.Ref = content
		if err := f.putInode(tx, ino, &cur); err != nil {
			return err
		}
		if err := bdel(tx, bMeta, compactKey(ino)); err != nil {
			return err
		}
		if err := noteFresh(tx, newObjects(content, old)); err != nil {
			return err
		}
		swapped = true
		return change(tx)
	})
	f.mu.Unlock()
	if err != nil {
		return false, err
	}
	if !swapped {
		return true, nil
	}
	if of != nil && of.sp == nil && of.srcCl != nil { // readers move to the new list
		of.srcCl.Close()
		of.src, of.srcCl = nil, nil
	}
	f.kickCommit()
	return false, nil
}

// mCompact + u64be(ino) marks a file whose list holds pieces (set by the seal that made
// them, journaled with it), so a compaction not done before an unmount is done after the
// next mount (scheduleMarked).
const mCompact = "compact/"

func compactKey(ino Ino) []byte { return append([]byte(mCompact), be64(uint64(ino))...) }

// unmarkCompact drops ino's mark, if it has one.
func (f *FS) unmarkCompact(ino Ino) error {
	has := false
	f.view(func(tx *bolt.Tx) error {
		has = tx.Bucket(bMeta).Get(compactKey(ino)) != nil
		return nil
	})
	if !has {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writeLocked(func(tx *bolt.Tx) error { return bdel(tx, bMeta, compactKey(ino)) })
}

// scheduleMarked schedules the compaction of every marked file (at Open).
func (f *FS) scheduleMarked() {
	var inos []Ino
	f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bMeta).Cursor()
		for k, _ := c.Seek([]byte(mCompact)); k != nil && len(k) == len(mCompact)+8 && string(k[:len(mCompact)]) == mCompact; k, _ = c.Next() {
			inos = append(inos, Ino(be64u(k[len(mCompact):])))
		}
		return nil
	})
	for _, ino := range inos {
		f.scheduleCompact(ino)
	}
}

// compactNow compacts now every file scheduled or marked for compaction, whatever its
// time (tests); a compaction that lost a race with the background one is tried again.
func (f *FS) compactNow(ctx context.Context) error {
	f.cmp.mu.Lock()
	var inos []Ino
	for ino := range f.cmp.due {
		inos = append(inos, ino)
	}
	f.cmp.mu.Unlock()
	f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bMeta).Cursor()
		for k, _ := c.Seek([]byte(mCompact)); k != nil && len(k) == len(mCompact)+8 && string(k[:len(mCompact)]) == mCompact; k, _ = c.Next() {
			inos = append(inos, Ino(be64u(k[len(mCompact):])))
		}
		return nil
	})
	var errs []error
	for _, ino := range inos {
		for try := 0; try < 5; try++ {
			retry, err := f.compactIno(ctx, ino)
			if err != nil || !retry {
				errs = append(errs, err)
				break
			}
		}
	}
	return errors.Join(errs...)
}

// newObjects returns the entries of c whose objects base does not use: only those are new
// since base was sealed (the base's objects are in a root already, or still recorded as
// fresh by the seal that made them), so only those need the commit's presence check.
func newObjects(c, base dedup.Content) dedup.Content {
	had := make(map[dedup.Locator]bool, base.Len())
	for i := range base.Len() {
		had[base.ChunkLocator(i)] = true
	}
	var out dedup.Content
	for i := range c.Len() {
		if !had[c.ChunkLocator(i)] {
			out = out.AppendContent(c.Slice(i, i+1))
		}
	}
	return out
}
