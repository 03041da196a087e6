package core

import (
	"errors"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Group commit. A bbolt commit costs two fsyncs (~3-6 ms each on the dev VM), so namespace
// changes (mkdir, create, rename, unlink, chmod, ...) go into one shared write transaction
// that is committed by a durability barrier — close(2) (Flush), Fsync, rename, link,
// symlink, a root commit, Close — or at the latest batchDelay after it began. Like a journaling file system,
// a namespace change becomes durable at the next barrier; a crash before it loses only
// changes that no close/fsync acknowledged. The shared transaction is used only under f.mu,
// and every operation checks before it writes, so a failing operation leaves nothing
// behind in it.

const (
	batchDelay = 200 * time.Millisecond
	batchOps   = 4096
)

// writeLocked runs fn in the shared write transaction (f.mu held). An error that is not a
// validation errno means the transaction may hold half an operation: it is rolled back
// (losing the not yet durable batch) and the error is returned.
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
		time.AfterFunc(batchDelay, f.batchCommit)
	}
	err := fn(f.wtx)
	if err != nil && !isValidation(err) {
		f.log.Error("core: local state update failed; dropping the uncommitted batch", "err", err)
		f.wtx.Rollback()
		f.wtx = nil
		return asErrno(err)
	}
	f.wtxOps++
	if err == nil && f.wtxOps >= batchOps {
		if cerr := f.commitLocked(); cerr != nil {
			return cerr
		}
	}
	return err
}

// commitLocked commits the shared transaction, if any (f.mu held): the barrier.
func (f *FS) commitLocked() error {
	tx := f.wtx
	if tx == nil {
		return nil
	}
	f.wtx = nil
	if err := tx.Commit(); err != nil {
		f.log.Error("core: committing local state failed", "err", err)
		return localErr("committing local state", err)
	}
	return nil
}

// barrierLocked commits the batch after a successful operation (f.mu held; deferred).
func (f *FS) barrierLocked(err *error) {
	if *err == nil {
		*err = f.commitLocked()
	}
}

func (f *FS) batchCommit() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.commitLocked()
	}
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
