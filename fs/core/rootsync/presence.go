package rootsync

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// Presence (docs/core.md, "Several devices"): every writer cache has a random device id
// and keeps the store object p/<hex id>, a metadata object of kind "presence" (encrypted)
// holding {id, device, pid, time, anchor, unsynced}. It is not a lock: any number of
// writers may run. It feeds `imgfs status` and gc's retention (KeepFrom, OtherUnsynced).

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

// EncodePresence is the plaintext of a presence record.
func EncodePresence(p Presence) []byte {
	b := []byte(presenceMagic)
	b = binary.AppendUvarint(b, uint64(len(p.ID)))
	b = append(b, p.ID...)
	b = binary.AppendUvarint(b, uint64(len(p.Device)))
	b = append(b, p.Device...)
	b = binary.AppendUvarint(b, p.Pid)
	b = binary.AppendVarint(b, p.Time)
	b = binary.AppendUvarint(b, p.Anchor)
	if p.Unsynced {
		return append(b, 1)
	}
	return append(b, 0)
}

var errPresence = errors.New("malformed presence record")

// DecodePresence decodes EncodePresence's output (fuzzed by FuzzDecodePresence).
func DecodePresence(b []byte) (Presence, error) {
	var p Presence
	if !bytes.HasPrefix(b, []byte(presenceMagic)) {
		return p, errPresence
	}
	b = b[len(presenceMagic):]
	ok := true
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			ok = false
			return 0
		}
		b = b[n:]
		return v
	}
	str := func(max uint64) []byte {
		n := uv()
		if !ok || n > max || n > uint64(len(b)) {
			ok = false
			return nil
		}
		v := b[:n:n]
		b = b[n:]
		return v
	}
	p.ID = str(64)
	p.Device = string(str(255))
	p.Pid = uv()
	if ok {
		v, n := binary.Varint(b)
		if n <= 0 {
			return Presence{}, errPresence
		}
		p.Time, b = v, b[n:]
	}
	p.Anchor = uv()
	if !ok || len(b) != 1 || b[0] > 1 {
		return Presence{}, errPresence
	}
	p.Unsynced = b[0] == 1
	return p, nil
}

// Presences reads and writes the presence records of one vault.
type Presences struct {
	Store backend.Store
	Key   keyring.Secret // the vault's metadata key
}

// Write replaces p's record.
func (ps Presences) Write(ctx context.Context, p Presence) error {
	obj, _, err := dedup.SealMeta(ps.Key, "presence", EncodePresence(p))
	if err != nil {
		return err
	}
	name := PresencePrefix + hex.EncodeToString(p.ID)
	if ow, ok := ps.Store.(backend.Overwriter); ok {
		return ow.Overwrite(ctx, name, bytes.NewReader(obj), int64(len(obj)))
	}
	if err := ps.Store.Delete(ctx, name); err != nil && !errors.Is(err, backend.ErrNotExist) {
		return err
	}
	return ps.Store.Put(ctx, name, bytes.NewReader(obj), int64(len(obj)))
}

// List returns the presence records in the store; records that do not open under the
// vault's key are skipped.
func (ps Presences) List(ctx context.Context) ([]Presence, error) {
	var names []string
	if err := ps.Store.List(ctx, PresencePrefix, func(i backend.Info) error {
		names = append(names, i.Name)
		return nil
	}); err != nil {
		return nil, err
	}
	var out []Presence
	for _, n := range names {
		b, err := backend.ReadSmall(ctx, ps.Store, n, 4096)
		if err != nil {
			continue
		}
		p, err := dedup.OpenMeta(ps.Key, "presence", dedup.Hash(b), b)
		if err != nil {
			continue
		}
		if rec, err := DecodePresence(p); err == nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

// Forget deletes the records of the devices named device (gone for good, with whatever
// they did not sync) and returns how many it deleted.
func (ps Presences) Forget(ctx context.Context, device string) (int, error) {
	all, err := ps.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range all {
		if p.Device == device {
			if err := ps.Store.Delete(ctx, PresencePrefix+hex.EncodeToString(p.ID)); err != nil && !errors.Is(err, backend.ErrNotExist) {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// OtherUnsynced are the devices other than self whose record says they may hold work not in
// the store: gc must not run while there are any.
func OtherUnsynced(all []Presence, self []byte) []Presence {
	var out []Presence
	for _, p := range all {
		if p.Unsynced && !bytes.Equal(p.ID, self) {
			out = append(out, p)
		}
	}
	return out
}

// KeepFrom is the oldest root gc keeps: the oldest anchor in any other device's record and
// this device's anchor, and never fewer than keep of the newest roots (docs/cli.md, gc).
func KeepFrom(all []Presence, self []byte, anchor, newest, keep uint64) uint64 {
	from := anchor
	for _, p := range all {
		if p.Anchor > 0 && !bytes.Equal(p.ID, self) { // this device's own record may be older
			from = min(from, p.Anchor)
		}
	}
	if newest >= keep {
		from = min(from, newest-keep+1)
	} else {
		from = 1
	}
	return max(from, 1)
}
