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

// writePresence replaces this device's presence record (best effort: a failure is logged;
// presence feeds status only).
func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

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

// GCLive is the live set for gc with several devices: ReferencedObjects, plus every root
// from the oldest anchor in any presence record to the newest and what they reference, so
// a device that comes back can still merge from its anchor (docs/cli.md, gc).
func (f *FS) GCLive(ctx context.Context) (map[string]bool, error) {
	live, err := f.ReferencedObjects(ctx)
	if err != nil {
		return nil, err
	}
	oldest := f.anchorSeq()
	all, err := Devices(ctx, f.store, f.keys)
	if err != nil {
		return nil, eio("listing presence records", err)
	}
	for _, p := range all {
		if p.Anchor > 0 {
			oldest = min(oldest, p.Anchor)
		}
	}
	newest, _, err := f.latestRoot(ctx)
	if err != nil {
		return nil, err
	}
	for seq := max(oldest, 1); seq <= newest; seq++ {
		r, _, err := f.loadRoot(ctx, seq)
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		live[dedup.RootName(seq)] = true
		for _, s := range r.Shards {
			live[dedup.MetaName(s.Loc)] = true
		}
		for _, a := range r.Aux {
			live[dedup.MetaName(a.Loc)] = true
		}
		t, err := f.loadTree(ctx, r)
		if err != nil {
			return nil, err
		}
		for _, ti := range t.Inodes {
			if ti.Node.HasRef {
				live[dedup.ContentName(ti.Node.Ref.Locator)] = true
			}
		}
	}
	return live, nil
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
