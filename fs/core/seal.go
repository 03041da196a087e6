package core

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

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
	f.sealMu.Unlock()
	defer func() {
		f.sealMu.Lock()
		delete(f.sealing, id)
		f.sealMu.Unlock()
		close(ch)
	}()

	var rec pendingRec
	var have bool
	err := f.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bPending).Get(be64(id))
		if v == nil {
			return nil
		}
		var err error
		rec, err = decodePending(v)
		have = err == nil
		return err
	})
	if err != nil {
		return asErrno(err)
	}
	if !have {
		return nil // done or superseded
	}
	sp, err := openSpool(f.spoolPath(id), f.lc.spool, false)
	if errors.Is(err, os.ErrNotExist) {
		// A newer flush of the file superseded this spool (and deleted it) after we read
		// the record: nothing to do if the record is gone now.
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
	// The locator is known only after sealing, so the object is staged before the upload:
	// in memory up to sealInMemory, else in a temp file.
	objSize := dedup.ObjectSize(rec.Size)
	var obj io.ReaderAt
	var ref dedup.Ref
	tmpName := ""
	inMemory := objSize <= sealInMemory
	if inMemory {
		// The plaintext is read from the spool once (Seal reads its source twice), and
		// both buffers are reused: fresh multi-megabyte buffers cost page faults.
		plain, out := getSealBuf(rec.Size), getSealBuf(objSize)
		defer putSealBuf(plain)
		defer putSealBuf(out)
		if err := readFullAtSpool(sp, *plain, rec.Size); err != nil {
			return localErr("reading spool", err)
		}
		buf := bytes.NewBuffer((*out)[:0])
		ref, err = dedup.Seal(f.keys.ConvergenceSecret, bytes.NewReader(*plain), rec.Size, buf)
		if err != nil {
			return localErr("sealing", err)
		}
		obj = bytes.NewReader(buf.Bytes())
	} else {
		tmp, err := os.CreateTemp(filepath.Join(f.dir, "tmp"), "seal-")
		if err != nil {
			return localErr("creating temporary object", err)
		}
		tmpName = tmp.Name()
		defer func() {
			tmp.Close()
			os.Remove(tmpName)
		}()
		w := bufio.NewWriterSize(tmp, 256<<10)
		ref, err = dedup.Seal(f.keys.ConvergenceSecret, spoolReader{sp, rec.Size}, rec.Size, w)
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return localErr("sealing", err)
		}
		obj = tmp
	}
	// The store's retry decorator cannot replay the streamed body, so a transient failure
	// (connection reset, timeout, lost answer) retries the whole upload; a Put that landed
	// although its answer was lost is then a dedup hit.
	f.uploading.Add(1)
	err = f.retryStore(ctx, "uploading content", func() error {
		_, err := dedup.UploadWith(ctx, f.store, ref.Locator, obj, objSize,
			dedup.UploadOptions{Verify: f.verifyMode(), Logger: f.log, Hashed: inMemory})
		return err
	})
	f.uploading.Add(-1)
	if err != nil {
		return eio("uploading content", err)
	}
	// Keep the object as a read-cache entry (it is ciphertext and it is what we stored),
	// unless the store is a local directory that reads serve from directly.
	if f.storePath == nil {
		if tmpName != "" {
			if os.Rename(tmpName, f.objPath(ref.Locator)) == nil {
				f.touchCache()
			}
		} else if b, ok := obj.(*bytes.Reader); ok {
			f.cacheBytes(ref.Locator, b)
		}
	}

	swapped := false
	f.mu.Lock()
	err = f.writeLocked(func(tx *bolt.Tx) error {
		if tx.Bucket(bPending).Get(be64(id)) == nil {
			return nil
		}
		if err := tx.Bucket(bPending).Delete(be64(id)); err != nil {
			return err
		}
		f.dropSpoolAfter(tx, id)
		n, err := f.getInode(tx, rec.Ino)
		if err != nil || n.Spool != id {
			return nil // deleted or superseded by a newer flush
		}
		n.Spool, n.HasRef, n.Ref, n.Size = 0, true, ref, rec.Size
		if err := f.putInode(tx, rec.Ino, &n); err != nil {
			return err
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
		if cb := f.opts.OnSealed; cb != nil {
			if ctx == f.ctx {
				cb(rec.Ino) // a background worker
			} else {
				go cb(rec.Ino) // Fsync/Sync: keep the callback off the caller's path
			}
		}
	}
	return nil
}

// sealInMemory: objects up to this size are sealed into memory (no temp file on disk).
var sealInMemory int64 = 32 << 20 // a var for tests

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

// readFullAtSpool reads the first size plaintext bytes of sp into p.
func readFullAtSpool(sp *spoolFile, p []byte, size int64) error {
	n, err := spoolReader{sp, size}.ReadAt(p, 0)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (f *FS) verifyMode() bool { return f.keys.Mode != "" && f.keys.Mode != keyring.ModeVault }

// removeSpool deletes a spool file and its accounting.
func (f *FS) removeSpool(id uint64) {
	p := f.spoolPath(id)
	if st, err := os.Stat(p); err == nil {
		if os.Remove(p) == nil {
			f.spoolUsed.Add(-st.Size())
		}
	}
}
