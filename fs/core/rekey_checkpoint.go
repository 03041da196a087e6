package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// A checkpoint of a content rekey (docs/format.md §3.1, step 3): old content ID -> new chunk
// list, a metadata object of kind "rekeyprog" sealed under the new K_meta at
// "rekey/progress-<20 digits>". A rerun with the same new keys (the reservation) takes every
// content whose new chunks are all still in the store (one HEAD per chunk: a gc after a
// crash may have deleted them) instead of reading, sealing and uploading it again.
// FinishRekey deletes the checkpoints.
const (
	rekeyPrefix     = "rekey/"
	checkpointName  = rekeyPrefix + "progress-"
	checkpointKind  = "rekeyprog"
	checkpointMagic = "IMGFSRK1"
	// A checkpoint is written after this much new content, or this long, since the last.
	checkpointBytes = 256 << 20
	checkpointEvery = 30 * time.Second
)

type checkpoint struct {
	names   []string // checkpoint objects in the store (removed after a newer one is written)
	done    map[dedup.Locator]dedup.Content
	pending int64 // bytes re-encrypted since the last save
	last    time.Time
}

func encodeCheckpoint(done map[dedup.Locator]dedup.Content) []byte {
	ids := make([]dedup.Locator, 0, len(done))
	for id := range done {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	var e encoder
	e.fixed([]byte(checkpointMagic))
	e.u(uint64(len(ids)))
	for _, id := range ids {
		e.fixed(id[:])
		e.b = done[id].AppendBinary(e.b)
	}
	return e.b
}

// decodeCheckpoint parses a checkpoint plaintext (fuzzed by FuzzDecodeCheckpoint). IDs are
// strictly increasing, so there is one encoding per checkpoint.
func decodeCheckpoint(b []byte) (map[dedup.Locator]dedup.Content, error) {
	d := decoder{b: b}
	if string(d.fixed(len(checkpointMagic))) != checkpointMagic {
		return nil, errBadTree
	}
	n := d.count(34) // an entry takes at least an ID and an empty chunk list (2 bytes)
	out := make(map[dedup.Locator]dedup.Content, n)
	var prev dedup.Locator
	for i := 0; i < n && d.err == nil; i++ {
		id := dedup.Locator(d.fixed(32))
		if d.err != nil || (i > 0 && bytes.Compare(id[:], prev[:]) <= 0) {
			return nil, errBadTree
		}
		c, k, err := dedup.DecodeContent(d.b)
		if err != nil {
			return nil, errBadTree
		}
		d.b = d.b[k:]
		out[id], prev = c, id
	}
	if err := d.end(); err != nil {
		return nil, errBadTree
	}
	return out, nil
}

// loadCheckpoint reads the newest checkpoint that opens under next (none: an empty one).
func loadCheckpoint(ctx context.Context, store backend.Store, next *keyring.Keys) (*checkpoint, error) {
	ck := &checkpoint{done: map[dedup.Locator]dedup.Content{}, last: time.Now()}
	if err := store.List(ctx, checkpointName, func(i backend.Info) error {
		ck.names = append(ck.names, i.Name)
		return nil
	}); err != nil {
		return nil, eio("listing rekey checkpoints", err)
	}
	sort.Strings(ck.names)
	for i := len(ck.names) - 1; i >= 0; i-- {
		obj, err := readAll(ctx, store, ck.names[i], dedup.MaxMetaSize+(64<<20))
		if err != nil {
			continue
		}
		p, err := dedup.OpenMeta(next.MetaKey, checkpointKind, dedup.Hash(obj), obj)
		if err != nil {
			continue // another key's (an abandoned reservation): removed when this one is saved
		}
		if done, err := decodeCheckpoint(p); err == nil {
			ck.done = done
			break
		}
	}
	return ck, nil
}

// maybeSave writes a checkpoint when enough is new (or always, with force and anything new),
// then removes the older ones.
func (ck *checkpoint) maybeSave(ctx context.Context, store backend.Store, next *keyring.Keys, done map[dedup.Locator]dedup.Content, force bool) error {
	if ck.pending == 0 || (!force && ck.pending < checkpointBytes && time.Since(ck.last) < checkpointEvery) {
		return nil
	}
	obj, _, err := dedup.SealMeta(next.MetaKey, checkpointKind, encodeCheckpoint(done))
	if err != nil {
		return eio("sealing a rekey checkpoint", err)
	}
	name := fmt.Sprintf("%s%020d", checkpointName, time.Now().UnixNano())
	if err := store.Put(ctx, name, bytes.NewReader(obj), int64(len(obj))); err != nil {
		return eio("storing a rekey checkpoint", err)
	}
	for _, old := range ck.names {
		if old != name {
			if err := store.Delete(ctx, old); err != nil && !errors.Is(err, backend.ErrNotExist) {
				return eio("removing an old rekey checkpoint", err)
			}
		}
	}
	ck.names, ck.pending, ck.last = []string{name}, 0, time.Now()
	return nil
}

// chunksPresent: every chunk of c is in the store (with the size its locator implies).
func chunksPresent(ctx context.Context, store backend.Store, c dedup.Content) bool {
	for i := range c.Len() {
		st, err := store.Stat(ctx, dedup.ContentName(c.ChunkLocator(i)))
		if err != nil || st.Size != dedup.ObjectSize(c.Chunk(i).Size) {
			return false
		}
	}
	return true
}
