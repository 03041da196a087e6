package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// Presence (docs/core.md, "Several devices"): every writer cache has a random device id
// (meta "lease", kept from the old writer lease) and keeps the store object p/<hex id>, a
// metadata object of kind "presence" (encrypted) holding {id, device, pid, time, anchor}.
// It is written at a writer Open and at Close. It is not a lock: any number of writers may
// run, and a device that crashed leaves a presence record that only feeds `imgfs status`.

const presenceMagic = "IMGFSPR1"

// PresencePrefix is where presence records live in the store.
const PresencePrefix = "p/"

// Presence is one device's record.
type Presence struct {
	ID     []byte
	Device string
	Pid    uint64
	Time   int64  // Unix nanoseconds of the write (the writer's clock; for display only)
	Anchor uint64 // the newest root this device had seen and merged
	// Unsynced: the device may hold work that is not in a root (it is mounted as a writer,
	// or it closed with work left, or it crashed). gc refuses to run while another device
	// says so (docs/cli.md, gc).
	Unsynced bool
}

func encodePresence(p Presence) []byte {
	var e encoder
	e.fixed([]byte(presenceMagic))
	e.bytes(p.ID)
	e.str(p.Device)
	e.u(p.Pid)
	e.i(p.Time)
	e.u(p.Anchor)
	e.byte1(b2u(p.Unsynced))
	return e.b
}

// decodePresence is the presence record decoder (fuzzed by FuzzDecodeRootAuxLease).
func decodePresence(b []byte) (Presence, error) {
	d := decoder{b: b}
	if string(d.fixed(len(presenceMagic))) != presenceMagic {
		d.fail()
	}
	p := Presence{ID: d.bytes(64), Device: d.str(255), Pid: d.u(), Time: d.i(), Anchor: d.u()}
	switch d.byte1() {
	case 0:
	case 1:
		p.Unsynced = true
	default:
		d.fail()
	}
	return p, d.end()
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

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// writePresence replaces this device's presence record (best effort: a failure is logged;
// presence feeds status only).
func (f *FS) writePresence(ctx context.Context, unsynced bool) {
	id, err := f.deviceID()
	if err != nil {
		f.log.Warn("core: presence record", "err", err)
		return
	}
	obj, _, err := dedup.SealMeta(f.keys.MetaKey, "presence", encodePresence(Presence{
		ID: id, Device: f.device(), Pid: uint64(os.Getpid()), Time: time.Now().UnixNano(), Anchor: f.anchorSeq(),
		Unsynced: unsynced}))
	if err != nil {
		f.log.Warn("core: presence record", "err", err)
		return
	}
	f.presenceAnchor.Store(f.anchorSeq())
	name := PresencePrefix + hex.EncodeToString(id)
	if ow, ok := f.store.(backend.Overwriter); ok {
		err = ow.Overwrite(ctx, name, bytes.NewReader(obj), int64(len(obj)))
	} else {
		if derr := f.store.Delete(ctx, name); derr != nil && !errors.Is(derr, backend.ErrNotExist) {
			err = derr
		} else {
			err = f.store.Put(ctx, name, bytes.NewReader(obj), int64(len(obj)))
		}
	}
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
	var names []string
	if err := store.List(ctx, PresencePrefix, func(i backend.Info) error {
		names = append(names, i.Name)
		return nil
	}); err != nil {
		return nil, err
	}
	var out []Presence
	for _, n := range names {
		b, err := readAll(ctx, store, n, 4096)
		if err != nil {
			continue
		}
		p, err := dedup.OpenMeta(keys.MetaKey, "presence", dedup.Hash(b), b)
		if err != nil {
			continue
		}
		if rec, err := decodePresence(p); err == nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

// OtherUnsyncedDevices are the other devices whose presence record says they may hold work
// not in the store: gc must not run while there are any (it could delete what they upload
// or reference next).
func (f *FS) OtherUnsyncedDevices(ctx context.Context) ([]Presence, error) {
	id, err := f.deviceID()
	if err != nil {
		return nil, err
	}
	all, err := Devices(ctx, f.store, f.keys)
	if err != nil {
		return nil, eio("listing presence records", err)
	}
	var out []Presence
	for _, p := range all {
		if p.Unsynced && !bytes.Equal(p.ID, id) {
			out = append(out, p)
		}
	}
	return out, nil
}

// ForgetDevice deletes the presence records of the devices named device (one that is gone
// for good, with whatever it did not sync). It returns how many it deleted.
func ForgetDevice(ctx context.Context, store backend.Store, keys *keyring.Keys, device string) (int, error) {
	all, err := Devices(ctx, store, keys)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range all {
		if p.Device == device {
			if err := store.Delete(ctx, PresencePrefix+hex.EncodeToString(p.ID)); err != nil && !errors.Is(err, backend.ErrNotExist) {
				return n, err
			}
			n++
		}
	}
	return n, nil
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
	from = f.anchorSeq()
	all, err := Devices(ctx, f.store, f.keys)
	if err != nil {
		return 0, 0, eio("listing presence records", err)
	}
	id, _ := f.deviceID()
	for _, p := range all {
		if p.Anchor > 0 && !bytes.Equal(p.ID, id) { // this device's own record may be older
			from = min(from, p.Anchor)
		}
	}
	if newest >= keep {
		from = min(from, newest-keep+1)
	} else {
		from = 1
	}
	return max(from, 1), newest, nil
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
	all, err := Devices(ctx, f.store, f.keys)
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
