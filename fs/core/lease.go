package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
)

// The writer lease is the store object "locks/writer": a metadata object of kind "lease"
// (encrypted, so the store learns nothing) holding {id, host, pid, time}. A writer mount
// creates it with a create-only Put and deletes it at Close. It is taken over without
// asking when it is provably stale:
//   - its id is the one kept in this cache (this cache's mount crashed), or
//   - it names this host and a pid that no longer runs (a crash here, cache wiped).
// Anything else needs Options.BreakLease. Read-only mounts do not take it.

const leaseMagic = "IMGFSLS1"

type leaseRec struct {
	ID   []byte
	Host string
	Pid  uint64
	Time int64
}

func encodeLease(l leaseRec) []byte {
	var e encoder
	e.fixed([]byte(leaseMagic))
	e.bytes(l.ID)
	e.str(l.Host)
	e.u(l.Pid)
	e.i(l.Time)
	return e.b
}

func decodeLease(b []byte) (leaseRec, error) {
	d := decoder{b: b}
	if string(d.fixed(len(leaseMagic))) != leaseMagic {
		d.fail()
	}
	l := leaseRec{ID: d.bytes(64), Host: d.str(255), Pid: d.u(), Time: d.i()}
	return l, d.end()
}

func pidAlive(pid uint64) bool {
	if pid == 0 || pid > 1<<22 {
		return false
	}
	err := syscall.Kill(int(pid), 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

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
	host, _ := os.Hostname()
	obj, _, err := dedup.SealMeta(f.keys.MetaKey, "lease",
		encodeLease(leaseRec{ID: id, Host: host, Pid: uint64(os.Getpid()), Time: time.Now().UnixNano()}))
	if err != nil {
		return eio("sealing the writer lease", err)
	}
	for try := 0; try < 3; try++ {
		err := f.store.Put(ctx, f.leaseName, bytes.NewReader(obj), int64(len(obj)))
		if err == nil {
			f.leaseID = id
			return nil
		}
		if !errors.Is(err, backend.ErrExist) {
			return eio("taking the writer lease", err)
		}
		cur, err := f.readLease(ctx)
		if errors.Is(err, backend.ErrNotExist) {
			continue // released meanwhile
		}
		stale := ""
		switch {
		case err != nil:
		case bytes.Equal(cur.ID, id):
			stale = "left by this cache's previous mount"
		case cur.Host == host && !pidAlive(cur.Pid):
			stale = "left by a mount on this host that no longer runs"
		}
		if stale == "" && !f.opts.BreakLease {
			who := "unknown holder"
			if err == nil {
				who = fmt.Sprintf("held by pid %d on %s since %s", cur.Pid, cur.Host,
					time.Unix(0, cur.Time).UTC().Format(time.RFC3339))
			}
			return fmt.Errorf("core: %w (%s, %s): another imgfs mount writes to this store; "+
				"mount read-only beside it, or if that mount crashed, break the lease (%w)",
				ErrLeaseHeld, f.leaseName, who, syscall.EBUSY)
		}
		if stale == "" {
			stale = "broken on request"
		}
		f.log.Warn("core: taking over the writer lease", "lease", f.leaseName, "why", stale)
		if err := f.store.Delete(ctx, f.leaseName); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return eio("breaking the writer lease", err)
		}
	}
	return errnoErr(syscall.EBUSY, "could not take the writer lease")
}

func (f *FS) readLease(ctx context.Context) (leaseRec, error) {
	b, err := readAll(ctx, f.store, f.leaseName, 4096)
	if err != nil {
		return leaseRec{}, err
	}
	p, err := dedup.OpenMeta(f.keys.MetaKey, "lease", dedup.Hash(b), b)
	if err != nil {
		return leaseRec{}, err
	}
	return decodeLease(p)
}

func (f *FS) releaseLease() {
	if f.leaseID == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, err := f.readLease(ctx)
	if err == nil && bytes.Equal(cur.ID, f.leaseID) {
		if err := f.store.Delete(ctx, f.leaseName); err != nil {
			f.log.Warn("core: could not release the writer lease", "err", err)
		}
	}
	f.leaseID = nil
}
