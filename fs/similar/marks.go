package similar

// "Not a duplicate" marks (docs/similar.md, "Marks"): the user says two photos are not
// near-duplicates, and `.similar/`, `imgfs similar` and `imgfs review` stop showing that
// pair. A mark is between two contents, not two paths, so it follows renames and copies,
// and it lives in the encrypted aux table `embnd` like the embeddings: it survives
// remounts, --reindex (which recomputes vectors, not content IDs) and other devices.
// Editing a photo gives it a new content ID, so its marks no longer apply to the edit.
//
//	embnd  content ID a || content ID b (64 bytes, a <= b) -> unix seconds of the mark (8 bytes)
//
// a == b marks the byte-identical copies of one content as "kept on purpose".

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/imgfs/imgfs/embed/index"
	"github.com/imgfs/imgfs/fs/control"
	"github.com/imgfs/imgfs/fs/core"
)

// TableNotDup is the aux table of "not a duplicate" marks.
const TableNotDup = "embnd"

// TrashDir is the folder (at the vault's root) where `imgfs review` moves the copies the
// user deleted. Photos in it are never shown as matches, and .similar/ does not list it.
const TrashDir = ".imgfs-trash"

// inTrash reports whether slash path p (from the root) is inside TrashDir.
func inTrash(p string) bool {
	p = trimSlash(p)
	return p == TrashDir || strings.HasPrefix(p, TrashDir+"/")
}

type markKey [2]index.ID

func newMarkKey(a, b index.ID) markKey {
	if b < a {
		a, b = b, a
	}
	return markKey{a, b}
}

// marksState is the in-memory copy of embnd, guarded by Indexer.mu.
type marksState struct {
	notDup map[markKey]bool
}

// markedLocked reports whether the pair (a, b) is marked "not a duplicate" (x.mu held).
func (x *Indexer) markedLocked(a, b index.ID) bool {
	return len(x.notDup) > 0 && x.notDup[newMarkKey(a, b)]
}

func notDupKey(a, b [32]byte) []byte {
	if bytes.Compare(b[:], a[:]) < 0 {
		a, b = b, a
	}
	return append(append(make([]byte, 0, 64), a[:]...), b[:]...)
}

// loadMarks reads embnd at Start. Marks whose contents no file references any more are
// dropped (like orphan embeddings), unless the mount is read-only.
func (x *Indexer) loadMarks(v Vault, live map[index.ID]bool) error {
	m := map[markKey]bool{}
	var orphans [][]byte
	err := v.ForEachAux(TableNotDup, func(k, _ []byte) error {
		if len(k) != 64 {
			return nil
		}
		a, b := idOf([32]byte(k[:32])), idOf([32]byte(k[32:]))
		if !live[a] || !live[b] {
			orphans = append(orphans, append([]byte(nil), k...))
			return nil
		}
		m[newMarkKey(a, b)] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("similar: load marks: %w", err)
	}
	if !x.cfg.ReadOnly {
		for _, k := range orphans {
			v.DeleteAux(TableNotDup, k)
		}
	}
	x.mu.Lock()
	x.notDup = m
	x.mu.Unlock()
	return nil
}

// contentOf resolves a slash path to its sealed content.
func (x *Indexer) contentOf(p string) ([32]byte, error) {
	ino, err := x.v.Resolve(p)
	if err != nil {
		return [32]byte{}, fmt.Errorf("%s: %w", p, err)
	}
	cid, ok, err := x.v.ContentID(ino)
	if err != nil {
		return [32]byte{}, fmt.Errorf("%s: %w", p, err)
	}
	if !ok {
		return [32]byte{}, fmt.Errorf("%s: %w (a directory, or not sealed yet: run imgfs sync)", p, ErrNotFound)
	}
	return cid, nil
}

// PairRef names two photos by slash path from the mount root.
type PairRef struct {
	A string `json:"a"`
	B string `json:"b"`
}

// Mark records "not a duplicate" for each pair (both paths must be sealed files). It
// returns how many marks are new.
func (x *Indexer) Mark(pairs []PairRef) (int, error) {
	if x.cfg.ReadOnly {
		return 0, errors.New("read-only mount: marks cannot be changed")
	}
	type pc struct{ a, b [32]byte }
	var cs []pc
	for _, p := range pairs {
		a, err := x.contentOf(p.A)
		if err != nil {
			return 0, err
		}
		b, err := x.contentOf(p.B)
		if err != nil {
			return 0, err
		}
		cs = append(cs, pc{a, b})
	}
	now := binary.BigEndian.AppendUint64(nil, uint64(time.Now().Unix()))
	n := 0
	for _, c := range cs {
		k := newMarkKey(idOf(c.a), idOf(c.b))
		x.mu.Lock()
		had := x.notDup[k]
		x.mu.Unlock()
		if had {
			continue
		}
		if err := x.v.PutAux(TableNotDup, notDupKey(c.a, c.b), now); err != nil {
			return n, fmt.Errorf("similar: store mark: %w", err)
		}
		x.mu.Lock()
		if x.notDup == nil {
			x.notDup = map[markKey]bool{}
		}
		x.notDup[k] = true
		x.gen++ // .similar/ snapshots are rebuilt
		x.mu.Unlock()
		n++
	}
	return n, nil
}

// Unmark removes marks: for a pair with both paths, the mark between them; with B empty,
// every mark of A. It returns how many marks it removed.
func (x *Indexer) Unmark(pairs []PairRef) (int, error) {
	if x.cfg.ReadOnly {
		return 0, errors.New("read-only mount: marks cannot be changed")
	}
	var keys [][]byte
	for _, p := range pairs {
		a, err := x.contentOf(p.A)
		if err != nil {
			return 0, err
		}
		if p.B != "" {
			b, err := x.contentOf(p.B)
			if err != nil {
				return 0, err
			}
			keys = append(keys, notDupKey(a, b))
			continue
		}
		// Every mark of A: the stored keys hold the full content IDs.
		if err := x.v.ForEachAux(TableNotDup, func(k, _ []byte) error {
			if len(k) == 64 && (bytes.Equal(k[:32], a[:]) || bytes.Equal(k[32:], a[:])) {
				keys = append(keys, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	n := 0
	for _, k := range keys {
		mk := newMarkKey(idOf([32]byte(k[:32])), idOf([32]byte(k[32:])))
		x.mu.Lock()
		had := x.notDup[mk]
		x.mu.Unlock()
		if !had {
			continue
		}
		if err := x.v.DeleteAux(TableNotDup, k); err != nil {
			return n, fmt.Errorf("similar: remove mark: %w", err)
		}
		x.mu.Lock()
		delete(x.notDup, mk)
		x.gen++
		x.mu.Unlock()
		n++
	}
	return n, nil
}

// Marks lists the marks whose two contents are still held by files, one pair of paths
// each (the first path of each content, by name), sorted.
func (x *Indexer) Marks() []PairRef {
	x.mu.Lock()
	var ks []markKey
	for k := range x.notDup {
		ks = append(ks, k)
	}
	inos := map[index.ID][]core.Ino{}
	for _, k := range ks {
		for _, id := range k {
			inos[id] = append([]core.Ino(nil), x.inos[id]...)
		}
	}
	x.mu.Unlock()
	first := func(id index.ID, skip string) string {
		var ps []string
		for _, o := range inos[id] {
			if p, ok := x.live(o, id); ok && p != skip {
				ps = append(ps, p)
			}
		}
		sort.Strings(ps)
		if len(ps) == 0 {
			return ""
		}
		return ps[0]
	}
	var out []PairRef
	for _, k := range ks {
		a := first(k[0], "")
		b := first(k[1], "")
		if k[0] == k[1] {
			b = first(k[1], a)
		}
		if a == "" || b == "" {
			continue
		}
		if b < a {
			a, b = b, a
		}
		out = append(out, PairRef{a, b})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].A != out[j].A {
			return out[i].A < out[j].A
		}
		return out[i].B < out[j].B
	})
	return out
}

// Control-socket ops for marks (registered by Register).
const (
	OpMark  = "similar.mark"  // MarkRequest -> MarkResponse
	OpMarks = "similar.marks" // -> MarksResponse
)

// MarkRequest adds (or, with Unmark, removes) "not a duplicate" marks.
type MarkRequest struct {
	Pairs  []PairRef `json:"pairs"`
	Unmark bool      `json:"unmark,omitempty"`
}

// MarkResponse says how many marks were added or removed.
type MarkResponse struct {
	Changed int `json:"changed"`
}

// MarksResponse lists the marks.
type MarksResponse struct {
	Marks []PairRef `json:"marks"`
}

func (x *Indexer) registerMarks(srv *control.Server) {
	srv.Handle(OpMark, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var req MarkRequest
		if err := json.Unmarshal(raw, &req); err != nil {
			return nil, fmt.Errorf("bad request: %v", err)
		}
		var n int
		var err error
		if req.Unmark {
			n, err = x.Unmark(req.Pairs)
		} else {
			for _, p := range req.Pairs {
				if p.A == "" || p.B == "" {
					return nil, errors.New("bad request: a mark needs two paths")
				}
			}
			n, err = x.Mark(req.Pairs)
		}
		return MarkResponse{n}, err
	})
	srv.Handle(OpMarks, func(ctx context.Context, _ json.RawMessage) (any, error) {
		return MarksResponse{Marks: x.Marks()}, nil
	})
}
