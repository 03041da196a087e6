package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/fs/core/rootsync"
)

// Presence (docs/core.md, "Several devices"): the records and gc's retention rule are in
// rootsync (presence.go); every writer cache has a random device id (meta "lease", kept
// from the old writer lease) and writes its record at a writer Open, at Close and when its
// anchor moved presenceEvery roots.

// PresencePrefix is where presence records live in the store.
const PresencePrefix = rootsync.PresencePrefix

// Presence is one device's record.
type Presence = rootsync.Presence

func (f *FS) presences() rootsync.Presences {
	return rootsync.Presences{Store: f.store, Key: f.keys.MetaKey}
}

// deviceID returns this cache's random device id, creating it on first use.
func (f *FS) deviceID() ([]byte, error) {
	var id []byte
	f.db.View(func(tx *bolt.Tx) error {
		id = append([]byte(nil), tx.Bucket(bMeta).Get([]byte(mLease))...)
		return nil
	})
	if len(id) == 16 {
		return id, nil
	}
	id = make([]byte, 16)
	rand.Read(id)
	err := f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put([]byte(mLease), id) })
	return id, asErrno(err)
}

// writePresence replaces this device's presence record (best effort: a failure is logged;
// the record feeds status and gc).
func (f *FS) writePresence(ctx context.Context, unsynced bool) {
	id, err := f.deviceID()
	if err != nil {
		f.log.Warn("core: presence record", "err", err)
		return
	}
	anchor := f.anchorSeq()
	err = f.presences().Write(ctx, Presence{ID: id, Device: f.device(), Pid: uint64(os.Getpid()),
		Time: time.Now().UnixNano(), Anchor: anchor, Unsynced: unsynced})
	f.presenceAnchor.Store(anchor)
	if err != nil {
		f.log.Warn("core: could not write this device's presence record", "err", err)
	}
}

// presenceEvery: a writer rewrites its presence record when its anchor moved this many roots
// since the last one, so gc's retention (keepFrom) follows long-running mounts.
const presenceEvery = 64

func (f *FS) notePresence(ctx context.Context) {
	if !f.ro && f.anchorSeq() >= f.presenceAnchor.Load()+presenceEvery {
		f.writePresence(ctx, true)
	}
}

// Devices lists the presence records in the store (for `imgfs status`); records that do not
// open under the vault's key are skipped.
func Devices(ctx context.Context, store backend.Store, keys *keyring.Keys) ([]Presence, error) {
	return rootsync.Presences{Store: store, Key: keys.MetaKey}.List(ctx)
}

// OtherUnsyncedDevices are the other devices whose presence record says they may hold work
// not in the store: gc must not run while there are any (it could delete what they upload
// or reference next).
func (f *FS) OtherUnsyncedDevices(ctx context.Context) ([]Presence, error) {
	id, err := f.deviceID()
	if err != nil {
		return nil, err
	}
	all, err := f.presences().List(ctx)
	if err != nil {
		return nil, eio("listing presence records", err)
	}
	return rootsync.OtherUnsynced(all, id), nil
}

// LocalWork says what work of its own this cache holds that is not in the store yet ("":
// none): a writer-side command stores it first (docs/core.md).
func (f *FS) LocalWork() string { return f.localWork() }

// ForgetDevice deletes the presence records of the devices named device (one that is gone
// for good, with whatever it did not sync). It returns how many it deleted.
func ForgetDevice(ctx context.Context, store backend.Store, keys *keyring.Keys, device string) (int, error) {
	return rootsync.Presences{Store: store, Key: keys.MetaKey}.Forget(ctx, device)
}

// DefaultKeepRoots is how many of the newest roots gc keeps besides every root from the
// oldest writer device's anchor on (what a device that is behind needs to check the chain
// from its anchor, rollback detection, and to merge from it). Older roots, and the objects
// only they reference, go: a deleted file's content is not kept for the sake of history.
// Read-only caches have no presence record: if their roots were collected they load the
// newest root without the chain check (a warning).
const DefaultKeepRoots = 1

// keepFrom is the oldest root gc keeps: the oldest anchor in any presence record (or this
// cache's), and never fewer than keep of the newest roots.
func (f *FS) keepFrom(ctx context.Context, keep uint64) (from, newest uint64, err error) {
	newest, _, err = f.latestRoot(ctx)
	if err != nil {
		return 0, 0, err
	}
	all, err := f.presences().List(ctx)
	if err != nil {
		return 0, 0, eio("listing presence records", err)
	}
	id, _ := f.deviceID()
	return rootsync.KeepFrom(all, id, f.anchorSeq(), newest, keep), newest, nil
}

// GCLive is the live set for gc with several devices: ReferencedObjects, plus every root gc
// keeps (KeepRoots) and what they reference, so a device that comes back can still check
// the chain from its anchor and merge from it (docs/cli.md, gc).
func (f *FS) GCLive(ctx context.Context) (map[string]bool, error) {
	return f.gcLive(ctx, DefaultKeepRoots)
}

func (f *FS) gcLive(ctx context.Context, keep uint64) (map[string]bool, error) {
	live, err := f.ReferencedObjects(ctx)
	if err != nil {
		return nil, err
	}
	from, newest, err := f.keepFrom(ctx, keep)
	if err != nil {
		return nil, err
	}
	walked := map[dedup.Locator]bool{}
	for seq := from; seq <= newest; seq++ {
		r, _, err := f.loadRoot(ctx, seq)
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		live[dedup.RootName(seq)] = true
		for _, a := range r.Aux {
			live[dedup.MetaName(a.Loc)] = true
		}
		// Shards are shared between roots: walk each tree object once.
		fresh := &rootRec{}
		for _, s := range r.Shards {
			live[dedup.MetaName(s.Loc)] = true
			if !walked[s.Loc] {
				walked[s.Loc] = true
				fresh.Shards = append(fresh.Shards, s)
			}
		}
		t, err := f.loadTree(ctx, fresh)
		if err != nil {
			return nil, err
		}
		for _, ti := range t.Inodes {
			if ti.Node.HasRef {
				for i := 0; i < ti.Node.Ref.Len(); i++ {
					live[dedup.ContentName(ti.Node.Ref.ChunkLocator(i))] = true
				}
			}
		}
	}
	return live, nil
}

// CollectRoots deletes the root pointers r/<n> older than what gc keeps (see GCLive): the
// oldest device anchor and the newest keep roots stay. Run it before the object sweep, so
// no root pointer is left whose objects the sweep deletes. It returns how many it deleted.
func (f *FS) CollectRoots(ctx context.Context, keep uint64) (int, error) {
	if keep == 0 {
		keep = DefaultKeepRoots
	}
	from, _, err := f.keepFrom(ctx, keep)
	if err != nil {
		return 0, err
	}
	var old []string
	err = f.store.List(ctx, "r/", func(i backend.Info) error {
		if seq, err := dedup.ParseRootName(i.Name); err == nil && seq < from {
			old = append(old, i.Name)
		}
		return nil
	})
	if err != nil {
		return 0, eio("listing roots", err)
	}
	n := 0
	for _, name := range old {
		if err := f.store.Delete(ctx, name); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return n, eio("deleting an old root", err)
		}
		n++
	}
	return n, nil
}

// DeviceStatus is one line of `imgfs status`'s devices.
type DeviceStatus struct {
	Presence
	This bool // this cache's device
}

// Devices lists the vault's devices from their presence records, this one marked.
func (f *FS) Devices(ctx context.Context) ([]DeviceStatus, error) {
	all, err := f.presences().List(ctx)
	if err != nil {
		return nil, eio("listing presence records", err)
	}
	var id []byte
	f.db.View(func(tx *bolt.Tx) error {
		id = append([]byte(nil), tx.Bucket(bMeta).Get([]byte(mLease))...)
		return nil
	})
	out := make([]DeviceStatus, len(all))
	for i, p := range all {
		out[i] = DeviceStatus{Presence: p, This: len(id) > 0 && bytes.Equal(p.ID, id)}
	}
	return out, nil
}
