package similar

import (
	"errors"
	"fmt"
	"sort"

	"github.com/imgfs/imgfs/embed/index"
	"github.com/imgfs/imgfs/fs/core"
)

// Match is one near-duplicate of a file.
type Match struct {
	Ino   core.Ino `json:"-"`
	Path  string   `json:"path"`  // slash-separated, from the mount root, no leading slash
	Score float32  `json:"score"` // cosine similarity; 1 for byte-identical copies
	Tier  string   `json:"tier"`  // "identical", "same" or "similar"
}

// Tier names a score.
func Tier(score float32, identical bool) string {
	switch {
	case identical:
		return "identical"
	case score >= SamePhotoThreshold:
		return "same"
	default:
		return "similar"
	}
}

// ErrNotFound is returned by Query for a path that is not an indexed file.
var ErrNotFound = errors.New("not an indexed image")

// live returns ino's path if ino still exists and still has content id.
func (x *Indexer) live(ino core.Ino, id index.ID) (string, bool) {
	cid, ok, err := x.v.ContentID(ino)
	if err != nil || !ok || idOf(cid) != id {
		return "", false
	}
	p, err := x.v.Path(ino)
	if err != nil || inTrash(p) {
		return "", false // deleted by imgfs review: not a match any more (marks.go)
	}
	return trimSlash(p), true
}

func trimSlash(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	return p
}

// Query returns ino's near-duplicates, best first (ties by path): byte-identical copies
// (score 1), then matches at or above threshold (threshold 0 means the mount's; a threshold
// below the mount's searches the index instead of the graph), at most top (0: all).
// ino itself is left out; unlinked and changed files are left out.
func (x *Indexer) Query(ino core.Ino, threshold float32, top int) ([]Match, error) {
	graph, threshold := x.queryPlan(threshold)
	cid, ok, err := x.v.ContentID(ino)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w (not sealed yet: run imgfs sync)", ErrNotFound)
	}
	id := idOf(cid)
	var cands []index.Match
	if !graph {
		cands = x.neighbours(id, x.storedMirror(cid), threshold)
	}
	x.mu.Lock()
	x.setInoLocked(ino, id)
	if graph {
		for _, m := range x.nbr[id] {
			if m.Score >= threshold {
				cands = append(cands, m)
			}
		}
	}
	type cand struct {
		ino   core.Ino
		id    index.ID
		score float32
	}
	var cs []cand
	for _, o := range x.inos[id] {
		if o != ino && !x.markedLocked(id, id) {
			cs = append(cs, cand{o, id, 1})
		}
	}
	for _, m := range cands {
		if x.markedLocked(id, m.ID) {
			continue // "not a duplicate" (marks.go)
		}
		for _, o := range x.inos[m.ID] {
			cs = append(cs, cand{o, m.ID, m.Score})
		}
	}
	x.mu.Unlock()
	var out []Match
	seen := map[core.Ino]bool{ino: true}
	for _, c := range cs {
		if seen[c.ino] {
			continue
		}
		seen[c.ino] = true
		p, ok := x.live(c.ino, c.id)
		if !ok {
			continue
		}
		out = append(out, Match{Ino: c.ino, Path: p, Score: c.score, Tier: Tier(c.score, c.id == id)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		return out[i].Path < out[j].Path
	})
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out, nil
}

// hasMatch reports whether ino has at least one near-duplicate at the mount's threshold.
func (x *Indexer) hasMatch(ino core.Ino) bool {
	ms, err := x.Query(ino, 0, 1)
	return err == nil && len(ms) > 0
}

// PairOut is one pair of AllPairs.
type PairOut struct {
	A     string  `json:"a"`
	B     string  `json:"b"`
	Score float32 `json:"score"`
	Tier  string  `json:"tier"`
}

// AllPairs returns every near-duplicate pair of live files (threshold 0: the mount's),
// best first; byte-identical copies pair with score 1.
func (x *Indexer) AllPairs(threshold float32) []PairOut {
	graph, threshold := x.queryPlan(threshold)
	var edges []index.Pair
	if !graph {
		edges = bestPairs(append(x.idx.AllPairs(threshold), x.mirrorPairs(threshold)...))
	}
	x.mu.Lock()
	if graph {
		for a, ns := range x.nbr {
			for _, m := range ns {
				if a < m.ID && m.Score >= threshold {
					edges = append(edges, index.Pair{A: a, B: m.ID, Score: m.Score})
				}
			}
		}
	}
	inos := make(map[index.ID][]core.Ino, len(x.inos))
	for id, l := range x.inos {
		inos[id] = append([]core.Ino(nil), l...)
	}
	// Pairs marked "not a duplicate" (marks.go) are left out.
	kept := edges[:0]
	for _, e := range edges {
		if !x.markedLocked(e.A, e.B) {
			kept = append(kept, e)
		}
	}
	edges = kept
	selfMarked := map[index.ID]bool{}
	for id := range inos {
		if x.markedLocked(id, id) {
			selfMarked[id] = true
		}
	}
	x.mu.Unlock()
	paths := map[index.ID][]string{}
	pathsOf := func(id index.ID) []string {
		if p, ok := paths[id]; ok {
			return p
		}
		var ps []string
		for _, o := range inos[id] {
			if p, ok := x.live(o, id); ok {
				ps = append(ps, p)
			}
		}
		sort.Strings(ps)
		paths[id] = ps
		return ps
	}
	var out []PairOut
	for id := range inos {
		if selfMarked[id] {
			continue
		}
		ps := pathsOf(id)
		for i := 0; i < len(ps); i++ {
			for j := i + 1; j < len(ps); j++ {
				out = append(out, PairOut{ps[i], ps[j], 1, "identical"})
			}
		}
	}
	for _, e := range edges {
		for _, pa := range pathsOf(e.A) {
			for _, pb := range pathsOf(e.B) {
				a, b := pa, pb
				if b < a {
					a, b = b, a
				}
				out = append(out, PairOut{a, b, e.Score, Tier(e.Score, false)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		if out[i].A != out[j].A {
			return out[i].A < out[j].A
		}
		return out[i].B < out[j].B
	})
	return out
}
