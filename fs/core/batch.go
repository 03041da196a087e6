package core

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Group commit (docs/core.md, "What close and fsync guarantee"). A bbolt commit costs two
// fsyncs, so every namespace change and every close(2) goes into one shared write
// transaction, and each operation appends its changes to the redo journal (journal.go)
// with write(2) before it returns: from then on a kill -9 cannot lose it. The transaction
// is committed once per window (batchDelay after it began), by Fsync, Sync, a root commit or
// Close: first the spool files recorded since the last commit reach the disk (one
// syncfs(2), then fsync for stragglers), then bbolt commits with the next journal
// generation. So a power loss loses at most the changes of the last window. The shared
// transaction is used only under f.mu, and every operation checks before it writes, so a
// failing operation leaves nothing behind in it.

// batchDelay is the group-commit window (a variable for the journal tests; each FS copies
// it at Open).
var batchDelay = time.Second

const (
	batchOps  = 4096  // a batch this long is committed early, in the background
	batchHard = 32768 // ... and at once (under f.mu) when it grows past this
)

// writeLocked runs fn in the shared write transaction (f.mu held) and journals what it
// changed. An error that is not a validation errno means the transaction may hold half an
// operation: it is rolled back (losing the not yet durable batch) and the error is returned.
func (f *FS) writeLocked(fn func(tx *bolt.Tx) error) error {
	if f.closed {
		return errnoErr(syscall.EIO, "file system is closed")
	}
	if f.wtx == nil {
		tx, err := f.db.Begin(true)
		if err != nil {
			return localErr("local state", err)
		}
		f.wtx, f.wtxOps = tx, 0
		if f.jr != nil {
			f.jr.cur = journalRec{}
			txJournals.Store(tx, f.jr)
		}
		time.AfterFunc(f.window, f.batchCommit)
	}
	err := fn(f.wtx)
	if err == nil || isValidation(err) {
		if f.jr != nil {
			if jerr := f.jr.append(); jerr != nil {
				err = localErr("writing journal", jerr)
			}
		}
	}
	if err != nil && !isValidation(err) {
		f.log.Error("core: local state update failed; dropping the uncommitted batch", "err", err)
		f.rollbackLocked()
		return asErrno(err)
	}
	f.wtxOps++
	if err == nil && f.wtxOps >= batchOps && f.wtxOps%batchOps == 0 {
		go f.batchCommit()
	}
	if err == nil && f.wtxOps >= batchHard {
		if cerr := f.commitLocked(); cerr != nil {
			return cerr
		}
	}
	return err
}

// rollbackLocked drops the batch (f.mu held). Its journal records must then never be
// applied: the generation is bumped in a commit of its own.
func (f *FS) rollbackLocked() {
	txJournals.Delete(f.wtx)
	f.wtx.Rollback()
	f.wtx = nil
	f.unsynced = nil
	if f.jr == nil {
		return
	}
	gen := f.jr.gen + 1
	if err := f.db.Update(func(tx *bolt.Tx) error { return putU64(tx, mJournalGen, gen) }); err != nil {
		f.log.Error("core: local state unwritable after a failed update", "err", err)
		return
	}
	f.jr.reset(gen)
}

// commitLocked commits the shared transaction, if any (f.mu held): the barrier. The
// spools its journal records point at reach the disk first.
func (f *FS) commitLocked() error {
	tx := f.wtx
	if tx == nil {
		return nil
	}
	if err := f.syncSpoolsLocked(tx); err != nil {
		f.rollbackLocked()
		return localErr("fsync spool", err)
	}
	f.wtx = nil
	txJournals.Delete(tx)
	if f.jr != nil {
		if err := putU64(tx, mJournalGen, f.jr.gen+1); err != nil {
			tx.Rollback()
			return localErr("committing local state", err)
		}
	}
	if err := tx.Commit(); err != nil {
		f.log.Error("core: committing local state failed", "err", err)
		if f.jr != nil {
			f.wtx = nil
			f.db.Update(func(tx *bolt.Tx) error { return putU64(tx, mJournalGen, f.jr.gen+1) })
			f.jr.reset(f.jr.gen + 1)
		}
		return localErr("committing local state", err)
	}
	if f.jr != nil {
		if err := f.jr.reset(f.jr.gen + 1); err != nil {
			f.log.Warn("core: emptying the journal failed (its records are of an old generation now)", "err", err)
		}
	}
	return nil
}

// syncSpoolsLocked makes the spool files that journal records of the batch point at
// durable, except those already sealed (their record is gone from the batch).
func (f *FS) syncSpoolsLocked(tx *bolt.Tx) error {
	if len(f.unsynced) == 0 {
		return nil
	}
	ids := f.unsynced
	f.unsynced = nil
	var todo []uint64
	for id := range ids {
		if tx.Bucket(bPending).Get(be64(id)) != nil {
			todo = append(todo, id)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if len(todo) > 4 {
		return syncfs(filepath.Join(f.dir, "spool"))
	}
	for _, id := range todo {
		sf, err := os.Open(f.spoolPath(id))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = sf.Sync()
		sf.Close()
		if err != nil {
			return err
		}
	}
	return syncDir(filepath.Join(f.dir, "spool"))
}

// batchCommit is the group commit: the spools of the window that are not sealed yet reach
// the disk with one syncfs(2) outside f.mu (a few, and those recorded meanwhile, are
// fsynced by commitLocked), then the batch commits. Spools sealed already need nothing: a
// spool deleted before the kernel wrote it back never costs a disk write.
func (f *FS) batchCommit() {
	f.mu.Lock()
	var ids []uint64
	if f.wtx != nil {
		for id := range f.unsynced {
			if f.wtx.Bucket(bPending).Get(be64(id)) != nil {
				ids = append(ids, id) // not sealed yet (a sealed spool needs no fsync)
			}
		}
	}
	f.mu.Unlock()
	if len(ids) > 4 && syncfs(filepath.Join(f.dir, "spool")) == nil {
		f.mu.Lock()
		for _, id := range ids {
			delete(f.unsynced, id)
		}
		f.mu.Unlock()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.commitLocked()
	}
}

// syncfs flushes the file system that holds dir (syncfs(2)): one call for all the spool
// files of a window instead of one fsync each.
func syncfs(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// isValidation reports errors that operations raise before writing anything.
func isValidation(err error) bool {
	for _, e := range []syscall.Errno{syscall.ENOENT, syscall.EEXIST, syscall.ENOTDIR, syscall.EISDIR,
		syscall.ENOTEMPTY, syscall.EINVAL, syscall.EPERM, syscall.ENODATA, syscall.ENAMETOOLONG,
		syscall.ERANGE, syscall.E2BIG, syscall.EROFS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
