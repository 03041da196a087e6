package similar

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync"
	"syscall"

	"github.com/imgfs/imgfs/embed/index"
	"github.com/imgfs/imgfs/fs/core"
)

// Aux table names.
const (
	TableEmb     = "emb"
	TableNoImage = "embx"
	TableQueue   = "embq"
)

// LazyTables are the tables whose changes join the vault's next root commit instead of
// starting one (core.Options.LazyAux): embeddings, the queue and failure records follow
// the photos' own commits; "not a duplicate" marks, a user's act, commit at once.
var LazyTables = []string{TableEmb, TableNoImage, TableQueue, TableFailed}

func idOf(cid [32]byte) index.ID { return index.ID(binary.BigEndian.Uint64(cid[:8])) }

func inoKey(ino core.Ino) []byte { return binary.BigEndian.AppendUint64(nil, uint64(ino)) }

// Start loads the index from the vault's aux tables, queues what is missing, and starts
// the workers. The similarity graph is built in the background (GraphReady).
func (x *Indexer) Start(v Vault) error {
	if x.cfg.ReadOnly {
		v = newMemTables(v)
	}
	model := x.emb.ID()
	type loaded struct {
		id  index.ID
		cid [32]byte
		vec []float32
	}
	var ents []loaded
	stale := map[index.ID]bool{}
	err := v.ForEachAux(TableEmb, func(k, val []byte) error {
		if len(k) != 32 {
			return nil
		}
		e, err := index.DecodeEntry(val)
		if err != nil {
			x.log.Warn("similar: dropping a corrupt embedding", "err", err)
			return nil
		}
		var cid [32]byte
		copy(cid[:], k)
		if e.Model != model || len(e.Vector) != x.emb.Dim() {
			stale[idOf(cid)] = true
			return nil
		}
		ents = append(ents, loaded{idOf(cid), cid, e.Vector})
		return nil
	})
	if err != nil {
		return fmt.Errorf("similar: load embeddings: %w", err)
	}
	noImage := map[index.ID]bool{}
	if err := v.ForEachAux(TableNoImage, func(k, _ []byte) error {
		if len(k) == 32 {
			noImage[idOf([32]byte(k))] = true
		}
		return nil
	}); err != nil {
		return fmt.Errorf("similar: load: %w", err)
	}
	if err := x.loadFailures(v); err != nil {
		return fmt.Errorf("similar: load failures: %w", err)
	}
	live := map[index.ID]bool{}
	inoID := map[core.Ino]index.ID{}
	inos := map[index.ID][]core.Ino{}
	if err := v.ForEachFile(func(ino core.Ino, cid [32]byte) error {
		id := idOf(cid)
		live[id] = true
		inoID[ino] = id
		inos[id] = append(inos[id], ino)
		return nil
	}); err != nil {
		return fmt.Errorf("similar: list files: %w", err)
	}
	x.idx.Grow(len(ents))
	var orphans [][32]byte
	for _, e := range ents {
		if !live[e.id] {
			orphans = append(orphans, e.cid)
			continue
		}
		x.idx.Add(e.id, e.vec)
		x.cids[e.id] = e.cid
	}
	if !x.cfg.ReadOnly {
		for _, cid := range orphans {
			v.DeleteAux(TableEmb, cid[:])
		}
	}
	var q []qitem
	if err := v.ForEachAux(TableQueue, func(k, val []byte) error {
		if len(k) == 8 {
			q = append(q, qitem{core.Ino(binary.BigEndian.Uint64(k)), len(val) > 0 && val[0] == 1})
		}
		return nil
	}); err != nil {
		return fmt.Errorf("similar: load queue: %w", err)
	}

	if x.cfg.ReadOnly {
		q = nil
	}
	if err := x.loadMarks(v, live); err != nil {
		return err
	}
	x.mu.Lock()
	x.v = v
	photos := 0
	for id := range live {
		if !noImage[id] {
			photos++
		}
	}
	x.setThresholds(photos)
	x.inoID, x.inos, x.noImage, x.stale = inoID, inos, noImage, stale
	x.started = true
	for _, it := range q {
		x.enqueueLocked(it.ino, it.force, false)
	}
	// Files sealed while no indexer ran (or before a crash persisted the queue entry).
	missing := 0
	for ino, id := range inoID {
		if !x.idx.Has(id) && !noImage[id] && !x.queued[ino] {
			x.enqueueLocked(ino, false, true)
			missing++
		}
	}
	for _, ino := range x.early {
		x.enqueueLocked(ino, false, true)
	}
	x.early = nil
	x.mu.Unlock()
	x.log.Info("similar: index loaded", "embeddings", x.idx.Len(), "orphans_dropped", len(orphans),
		"queued", len(q)+missing, "threshold", x.cfg.Threshold, "verify_floor", x.floor())
	if len(stale) > 0 {
		x.log.Warn("similar: embeddings from another model are being recomputed in the background", "count", len(stale))
	}
	for i := 0; i < x.cfg.Workers; i++ {
		x.wg.Add(1)
		go x.worker()
	}
	x.wg.Add(1)
	go x.buildGraph()
	return nil
}

// storedEntry returns the stored embedding of content cid when it is of the current model:
// one this device computed, or one another device computed and a merge of its root
// brought in (aux tables merge entry by entry, docs/core.md), so that device's photos are
// not embedded again here.
func (x *Indexer) storedEntry(cid [32]byte) (index.Entry, bool) {
	b, err := x.v.GetAux(TableEmb, cid[:])
	if err != nil {
		return index.Entry{}, false
	}
	e, err := index.DecodeEntry(b)
	if err != nil || e.Model != x.emb.ID() || len(e.Vector) != x.emb.Dim() {
		return index.Entry{}, false
	}
	return e, true
}

// memTables keeps the indexer's own tables in memory on a read-only mount, where the core
// refuses writes: what such a mount embeds (other devices' photos whose embeddings are
// not in the store yet) serves this mount and is computed again at its next mount
// (docs/similar.md, "Several devices"). Reads see the stored entries under the memory's.
// Marks are refused before they get here (marks.go).
type memTables struct {
	Vault
	mu sync.Mutex
	t  map[string]map[string][]byte // table -> key -> value; nil value: deleted
}

func newMemTables(v Vault) *memTables { return &memTables{Vault: v, t: map[string]map[string][]byte{}} }

// own reports whether the indexer's own tables hold table (marks are not).
func (m *memTables) own(table string) bool {
	switch table {
	case TableEmb, TableNoImage, TableQueue, TableFailed:
		return true
	}
	return false
}

func (m *memTables) set(table string, key, value []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t[table] == nil {
		m.t[table] = map[string][]byte{}
	}
	m.t[table][string(key)] = value
}

func (m *memTables) PutAux(table string, key, value []byte) error {
	if !m.own(table) {
		return m.Vault.PutAux(table, key, value)
	}
	m.set(table, key, append([]byte{}, value...))
	return nil
}

func (m *memTables) DeleteAux(table string, key []byte) error {
	if !m.own(table) {
		return m.Vault.DeleteAux(table, key)
	}
	m.set(table, key, nil)
	return nil
}

func (m *memTables) GetAux(table string, key []byte) ([]byte, error) {
	m.mu.Lock()
	v, ok := m.t[table][string(key)]
	m.mu.Unlock()
	switch {
	case !ok:
		return m.Vault.GetAux(table, key)
	case v == nil:
		return nil, syscall.ENOENT
	}
	return v, nil
}

func (m *memTables) ForEachAux(table string, fn func(key, value []byte) error) error {
	m.mu.Lock()
	mem := make(map[string][]byte, len(m.t[table]))
	for k, v := range m.t[table] {
		mem[k] = v
	}
	m.mu.Unlock()
	if err := m.Vault.ForEachAux(table, func(k, v []byte) error {
		if _, ok := mem[string(k)]; ok {
			return nil
		}
		return fn(k, v)
	}); err != nil {
		return err
	}
	keys := make([]string, 0, len(mem))
	for k, v := range mem {
		if v != nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn([]byte(k), mem[k]); err != nil {
			return err
		}
	}
	return nil
}
