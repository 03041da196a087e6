package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
)

// The writer lease is the store object "locks/writer" holding 16 random bytes (nothing about
// the vault or its user). A writer mount creates it with a create-only Put and deletes it
// at Close; the id is also kept in the cache, so the same cache reopening after a crash
// takes its own stale lease back. A stale lease of another machine needs BreakLease.
// Read-only mounts do not take it.

func (f *FS) takeLease(ctx context.Context) error {
	var id []byte
	f.db.View(func(tx *bolt.Tx) error {
		id = append([]byte(nil), tx.Bucket(bMeta).Get([]byte(mLease))...)
		return nil
	})
	if len(id) != 16 {
		id = make([]byte, 16)
		rand.Read(id)
		if err := f.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bMeta).Put([]byte(mLease), id)
		}); err != nil {
			return asErrno(err)
		}
	}
	for try := 0; try < 3; try++ {
		err := f.store.Put(ctx, f.leaseName, bytes.NewReader(id), int64(len(id)))
		if err == nil {
			f.leaseID = id
			return nil
		}
		if !errors.Is(err, backend.ErrExist) {
			return eio("taking the writer lease", err)
		}
		cur, err := readAll(ctx, f.store, f.leaseName, 1024)
		if errors.Is(err, backend.ErrNotExist) {
			continue // released meanwhile
		}
		if err != nil {
			return eio("reading the writer lease", err)
		}
		if bytes.Equal(cur, id) {
			f.leaseID = id // ours, left by a crash of this cache's mount
			return nil
		}
		if !f.opts.BreakLease {
			return fmt.Errorf("core: %w (%s): another imgfs mount writes to this store; "+
				"mount read-only beside it, or if that mount crashed, break the lease (%w)",
				ErrLeaseHeld, f.leaseName, syscall.EBUSY)
		}
		f.log.Warn("core: breaking another mount's writer lease", "lease", f.leaseName)
		if err := f.store.Delete(ctx, f.leaseName); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return eio("breaking the writer lease", err)
		}
	}
	return errnoErr(syscall.EBUSY, "could not take the writer lease")
}

func (f *FS) releaseLease() {
	if f.leaseID == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, err := readAll(ctx, f.store, f.leaseName, 1024)
	if err == nil && bytes.Equal(cur, f.leaseID) {
		if err := f.store.Delete(ctx, f.leaseName); err != nil {
			f.log.Warn("core: could not release the writer lease", "err", err)
		}
	}
}
