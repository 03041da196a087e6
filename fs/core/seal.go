package core

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// Sealing: a flushed spool (journal record "pending") is read, sealed into a content object
// in CacheDir/tmp, uploaded (dedup check first), and then one bbolt transaction swaps the
// inode to the content reference, if the inode still points at that spool, and drops the
// journal record. Only after that commit is the spool file deleted.

func (f *FS) ctxOrBackground() context.Context {
	if f.ctx != nil {
		return f.ctx
	}
	return context.Background()
}

func (f *FS) enqueueSeal(id uint64) {
	if f.ro {
		return
	}
	f.sealMu.Lock()
	if !f.queued[id] {
		f.queued[id] = true
		f.sealQ = append(f.sealQ, id)
	}
	f.sealMu.Unlock()
	select {
	case f.sealKick <- struct{}{}:
	default:
	}
}

func (f *FS) sealWorker() {
	defer f.wg.Done()
	background()
	for {
		f.sealMu.Lock()
		var id uint64
		if len(f.sealQ) > 0 {
			id = f.sealQ[0]
			f.sealQ = f.sealQ[1:]
			delete(f.queued, id)
		}
		more := len(f.sealQ) > 0
		f.sealMu.Unlock()
		if more {
			select { // let another worker pick up the rest
			case f.sealKick <- struct{}{}:
			default:
			}
		}
		if id == 0 {
			select {
			case <-f.ctx.Done():
				return
			case <-f.sealKick:
			}
			continue
		}
		if err := f.sealOne(f.ctx, id); err != nil && !errors.Is(err, errBusy) {
			if f.ctx.Err() != nil {
				return
			}
			f.log.Warn("core: sealing failed; will retry", "spool", id, "err", err)
			time.AfterFunc(5*time.Second, func() {
				if f.ctx.Err() == nil {
					f.enqueueSeal(id)
				}
			})
		}
	}
}

// sealNow seals spool id now (or waits for a worker that is doing it), for Fsync and Sync.
func (f *FS) sealNow(ctx context.Context, id uint64) error {
	for {
		err := f.sealOne(ctx, id)
		if !errors.Is(err, errBusy) {
			return err
		}
	}
}

var errBusy = errors.New("busy")

// sealOne seals one journal record. If another goroutine is sealing it, it waits for that
// one and returns errBusy so the caller re-checks.
func (f *FS) sealOne(ctx context.Context, id uint64) error {
	f.sealMu.Lock()
	if ch, ok := f.sealing[id]; ok {
		f.sealMu.Unlock()
		select {
		case <-ch:
			return errBusy
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ch := make(chan struct{})
	f.sealing[id] = ch
	outer := ctx
	if ctx == f.ctx {
		ctx = context.WithValue(ctx, bgKey{}, true) // still a background seal (durable.go)
	}
	ctx, stop := context.WithCancel(ctx)
	f.sealStop[id] = stop
	f.sealMu.Unlock()
	defer func() {
		f.sealMu.Lock()
		delete(f.sealing, id)
		delete(f.sealStop, id)
		f.sealMu.Unlock()
		stop()
		close(ch)
	}()
	lazy := f.lazyPuts(ctx)
	if !lazy && f.isDeferred(id) {
		return f.flushDeferred(ctx) // sealed already; its swap waits for the store's sync
	}

	sp, rec, err := f.openRecorded(id)
	if errors.Is(err, os.ErrNotExist) {
		// The record is gone (done, or superseded by a newer flush), or a newer flush
		// deleted this spool after we read it: nothing to do if the record is gone now.
		gone := false
		f.view(func(tx *bolt.Tx) error {
			gone = tx.Bucket(bPending).Get(be64(id)) == nil
			return nil
		})
		if gone {
			return nil
		}
	}
	if err != nil {
		return eio("opening spool", err)
	}
	defer sp.Close()
	content, hit, err := f.sealContent(ctx, sp, rec)
	if err != nil && ctx.Err() != nil && outer.Err() == nil {
		return nil // the spool was dropped meanwhile (removeSpool): nothing left to seal
	}
	if err != nil {
		return err
	}
	if lazy {
		f.deferSwap(id, rec, content) // durable.go
		return nil
	}
	if hit {
		// A chunk that was there already may be one a background sealer stored unsynced.
		if err := f.syncStore(ctx); err != nil {
			return eio("syncing the store", err)
		}
	}
	return f.swapSealed(ctx, id, rec, content)
}

// swapSealed points the inode at the sealed content if it still points at spool id, and
// drops the journal record (the spool file goes when the batch commits).
func (f *FS) swapSealed(ctx context.Context, id uint64, rec pendingRec, content dedup.Content) error {
	swapped := false
	f.mu.Lock()
	err := f.writeLocked(func(tx *bolt.Tx) error {
		if tx.Bucket(bPending).Get(be64(id)) == nil {
			return nil
		}
		if err := bdel(tx, bPending, be64(id)); err != nil {
			return err
		}
		f.dropSpoolAfter(tx, id)
		n, err := f.getInode(tx, rec.Ino)
		if err != nil || n.Spool != id {
			return nil // deleted or superseded by a newer flush
		}
		n.Spool, n.HasRef, n.Ref, n.Size = 0, true, content, rec.Size
		if err := f.putInode(tx, rec.Ino, &n); err != nil {
			return err
		}
		if err := noteFresh(tx, newObjects(content, rec.Base)); err != nil { // checked before the next root (workcopy.go)
			return err
		}
		if content.Pieces() > 0 { // compaction to do, also after a remount (patch.go)
			if err := bput(tx, bMeta, compactKey(rec.Ino), []byte{1}); err != nil {
				return err
			}
		}
		swapped = true
		return change(tx)
	})
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if swapped {
		f.kickCommit()
		if content.Pieces() > 0 {
			f.scheduleCompact(rec.Ino) // patch.go
		}
		if cb := f.opts.OnSealed; cb != nil {
			if f.background(ctx) {
				cb(rec.Ino) // a background worker
			} else {
				go cb(rec.Ino) // Fsync/Sync: keep the callback off the caller's path
			}
		}
	}
	return nil
}

// rechunk turns new content read from rd (a recorded spool, an overlay on base, or a
// sealed list for compaction) into the file's new chunk list (docs/format.md §11,
// docs/core.md): base shows below limit, held are the spool blocks that differ from it.
// Chunks of the base that nothing touches are kept; from a touched chunk on, the content is
// chunked again, sealed and uploaded chunk by chunk, until a new cut falls on a cut of the
// base whose chunk is untouched (the chunker depends only on the bytes since the last cut,
// so from there on the base's chunks are what chunking would give again), and so on to the
// end. Pieces of the base (§11.4) always count as touched, so the result has none. tap, if
// not nil, is offered the plaintext read (sealtap.go). hit says a chunk was in the store
// already (it may be one a background sealer stored unsynced, durable.go).
func (f *FS) rechunk(ctx context.Context, base dedup.Content, size, limit int64, held [][2]int64, rd io.ReaderAt, tap *sealTap) (out dedup.Content, hit bool, err error) {
	offs := base.Offsets()
	touched := func(j int) bool { // chunk j of the base must be sealed again
		lo, hi := offs[j], offs[j+1]
		if hi > limit || (j == base.Len()-1 && size != offs[j+1]) || base.IsPiece(j) {
			return true
		}
		for _, h := range held { // few runs: the blocks written since the base
			if h[0]*spoolBlock < hi && h[1]*spoolBlock > lo {
				return true
			}
		}
		return false
	}
	isTouched := make([]bool, base.Len())
	for j := range isTouched {
		isTouched[j] = touched(j)
	}
	pos := int64(0)
	plain := getSealBuf(dedup.ChunkMax)
	defer putSealBuf(plain)
	have := 0 // bytes of (*plain) loaded, starting at pos
	for pos < size {
		// At a cut of the base whose chunk is untouched, keep that chunk: chunking from
		// here would cut it the same way.
		if j := sort.Search(len(offs), func(j int) bool { return offs[j] >= pos }); j < base.Len() && offs[j] == pos && !isTouched[j] {
			k := j + 1
			for k < base.Len() && !isTouched[k] {
				k++
			}
			out = out.AppendContent(base.Slice(j, k))
			pos, have = offs[k], 0
			continue
		}
		// Read ahead in steps until the chunker finds the cut (most chunks end well
		// before ChunkMax).
		var n int
		scanned := 0 // (*plain)[:scanned] holds no cut
		for {
			final := pos+int64(have) == size
			if have > dedup.ChunkMin || final {
				var ok bool
				if n, ok = f.chunker.CutFrom((*plain)[:have], scanned, final); ok {
					break
				}
				scanned = have
			}
			want := int(min(int64(have+sealReadStep), int64(dedup.ChunkMax), size-pos))
			if err := readFullAt(rd, (*plain)[have:want], pos+int64(have)); err != nil {
				return dedup.Content{}, false, eio("reading spool", err)
			}
			have = want
		}
		ref, stored, err := f.sealChunk(ctx, (*plain)[:n])
		if err != nil {
			return dedup.Content{}, false, err
		}
		tap.add(pos, (*plain)[:n])
		hit = hit || !stored
		out = out.Append(ref)
		copy(*plain, (*plain)[n:have])
		have -= n
		pos += int64(n)
	}
	tap.offer(out)
	return out, hit, nil
}

// sealReadStep is how far the sealer reads ahead of the chunker.
const sealReadStep = 1 << 20

// sealChunk seals one chunk in memory and uploads it (dedup check first); stored says it
// was not there yet. A background sealer stores it unsynced (durable.go).
func (f *FS) sealChunk(ctx context.Context, chunk []byte) (ref dedup.Ref, stored bool, err error) {
	return f.sealObject(ctx, chunk, false)
}

// sealObject is sealChunk; putFirst skips the dedup check before the create-only Put (a
// patch object, patch.go: almost certainly new).
func (f *FS) sealObject(ctx context.Context, chunk []byte, putFirst bool) (ref dedup.Ref, stored bool, err error) {
	objSize := dedup.ObjectSize(int64(len(chunk)))
	out := getSealBuf(objSize)
	defer putSealBuf(out)
	buf := bytes.NewBuffer((*out)[:0])
	ref, err = dedup.Seal(f.keys.ConvergenceSecret, bytes.NewReader(chunk), int64(len(chunk)), buf)
	if err != nil {
		return dedup.Ref{}, false, localErr("sealing", err)
	}
	obj := bytes.NewReader(buf.Bytes())
	// Transient failures are retried by the store's retry decorator (the body is seekable);
	// a Put that landed although its answer was lost is a dedup hit on the retry.
	var store backend.Store = f.store
	if f.lazyPuts(ctx) {
		store = unsyncedStore{f.store, f.dur.store}
	}
	f.uploading.Add(1)
	res, err := dedup.UploadWith(ctx, store, ref.Locator, obj, objSize,
		dedup.UploadOptions{Verify: f.verifyMode(), Logger: f.log, Hashed: true, PutFirst: putFirst})
	f.uploading.Add(-1)
	if err != nil {
		return dedup.Ref{}, false, eio("uploading content", err)
	}
	// Keep the object as a read-cache entry (it is ciphertext and it is what we stored),
	// unless the store is a local directory that reads serve from directly.
	if f.storePath == nil {
		f.cacheBytes(ref.Locator, obj)
	}
	return ref, res.Stored, nil
}

// unsyncedStore is a store whose Put is the inner store's PutUnsynced (durable.go).
type unsyncedStore struct {
	backend.Store
	u backend.UnsyncedPutter
}

func (s unsyncedStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	return s.u.PutUnsynced(ctx, name, r, size)
}

// sealBufs recycles the in-memory sealing buffers (plaintext and object).
var sealBufs sync.Pool

func getSealBuf(n int64) *[]byte {
	if b, ok := sealBufs.Get().(*[]byte); ok && int64(cap(*b)) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, (n+1<<20-1)&^(1<<20-1)) // whole MiBs, so buffers fit later sizes
	return &b
}

func putSealBuf(b *[]byte) { sealBufs.Put(b) }

// readFullAt reads len(p) plaintext bytes at off.
func readFullAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (f *FS) verifyMode() bool { return f.keys.Mode != "" && f.keys.Mode != keyring.ModeVault }

// removeSpool deletes a spool file and its accounting, and stops a seal of it in flight:
// its open file would keep the disk space until the seal ended (docs/core.md, "Errors").
func (f *FS) removeSpool(id uint64) {
	f.sealMu.Lock()
	if stop := f.sealStop[id]; stop != nil {
		stop()
	}
	f.sealMu.Unlock()
	p := f.spoolPath(id)
	if st, err := os.Stat(p); err == nil {
		if os.Remove(p) == nil {
			f.spoolUsed.Add(-diskUsage(st))
		}
	}
}
