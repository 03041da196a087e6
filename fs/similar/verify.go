package similar

import (
	"io"
	"sort"

	"github.com/imgfs/imgfs/embed"
	"github.com/imgfs/imgfs/embed/index"
)

// The verification stage (docs/similar.md, Verification). A pair scoring at or above the
// mount's threshold is a match, as before. A pair scoring below it but at or above the
// verification floor is a candidate: it becomes a match only when the two photos' Local
// descriptors (embed/verify.go; stored in the photo's emb entry, version 3) confirm it. The
// graph holds both kinds of edges, so .similar/ and imgfs similar show pairs down to the
// floor, and the threshold itself can sit where unrelated photos do not reach.

// FullEmbedder is an Embedder that also computes the mirror vector and the Local
// descriptors (the emb entry of version 3).
type FullEmbedder interface {
	EmbedReaderFull(r io.Reader) (embed.Embedding, error)
}

func (e modelEmbedder) EmbedReaderFull(r io.Reader) (embed.Embedding, error) {
	return embed.EmbedFile(e.m, r)
}

// embedEntry embeds r as the Embedder can: the vector, the mirror vector and the Local
// descriptors (FullEmbedder), the two vectors (MirrorEmbedder), or the vector.
func (x *Indexer) embedEntry(r io.Reader) (ent index.Entry, err error) {
	ent.Model = x.emb.ID()
	switch e := x.emb.(type) {
	case FullEmbedder:
		var em embed.Embedding
		if em, err = e.EmbedReaderFull(r); err == nil {
			ent.Vector, ent.Mirror = em.Vector, em.Mirror
			if l, lm := em.Local, em.LocalMirror; l.Cells != nil && lm.Cells != nil {
				ent.LocalGrid, ent.LocalC, ent.Local, ent.LocalMirror = l.Grid, l.C, l.Cells, lm.Cells
			}
		}
	case MirrorEmbedder:
		ent.Vector, ent.Mirror, err = e.EmbedReaderMirror(r)
	default:
		ent.Vector, err = x.emb.EmbedReader(r)
	}
	return ent, err
}

// setThresholds sets the mount's threshold (when automatic) and verification floor for a
// library of n photos (threshold.go). Without Local descriptors (an Embedder that is not a
// FullEmbedder) or with verification off there is no floor.
func (x *Indexer) setThresholds(n int) {
	_, full := x.emb.(FullEmbedder)
	switch verify := full && x.cfg.VerifyFloor >= 0; {
	case !verify:
		if x.auto {
			x.cfg.Threshold = AutoThreshold(n)
		}
		x.verifyFloor = 0
	case x.auto && x.cfg.VerifyFloor == 0:
		x.cfg.Threshold, x.verifyFloor = AutoThresholds(n)
	case x.auto:
		x.cfg.Threshold = AutoThreshold(n)
	case x.cfg.VerifyFloor == 0:
		x.verifyFloor = VerifyFloor(n, x.cfg.Threshold)
	}
}

// floor is the lowest score in the graph: the verification floor when candidates are
// verified, else the threshold.
func (x *Indexer) floor() float32 {
	if x.verifyFloor > 0 && x.verifyFloor < x.cfg.Threshold {
		return x.verifyFloor
	}
	return x.cfg.Threshold
}

// queryPlan says how a query at threshold t is answered: from the graph (t = 0, the mount's
// default: every edge, verified ones included; or t at or above the threshold), or by
// searching the index (an explicit t below the threshold: every pair at t, unverified).
func (x *Indexer) queryPlan(t float32) (graph bool, floor float32) {
	if t == 0 {
		return true, x.floor()
	}
	return t >= x.cfg.Threshold, t
}

// entryOf reads id's stored entry of the current model (false when there is none).
func (x *Indexer) entryOf(id index.ID) (index.Entry, bool) {
	x.mu.Lock()
	cid, ok := x.cids[id]
	x.mu.Unlock()
	if !ok {
		return index.Entry{}, false
	}
	b, err := x.v.GetAux(TableEmb, cid[:])
	if err != nil || b == nil {
		return index.Entry{}, false
	}
	e, err := index.DecodeEntry(b)
	if err != nil || e.Model != x.emb.ID() {
		return index.Entry{}, false
	}
	return e, true
}

// verifyEntries reports whether the Local descriptors of a and b confirm the pair
// (embed.VerifyEmbeddings: under the alignment in which their vectors are closest).
func verifyEntries(a, b index.Entry) bool {
	if a.Local == nil || b.Local == nil {
		return false
	}
	emb := func(e index.Entry) embed.Embedding {
		return embed.Embedding{Vector: e.Vector, Mirror: e.Mirror,
			Local:       embed.Local{Grid: e.LocalGrid, C: e.LocalC, Cells: e.Local},
			LocalMirror: embed.Local{Grid: e.LocalGrid, C: e.LocalC, Cells: e.LocalMirror}}
	}
	v, err := embed.VerifyEmbeddings(emb(a), emb(b), embed.DefaultVerify)
	return err == nil && v.Pass(embed.DefaultVerify)
}

// keepVerified returns the pairs at or above the threshold and the candidates below it that
// verify. self, when not nil, is the entry of every pair's A (a photo just embedded).
func (x *Indexer) keepVerified(ps []index.Pair, self *index.Entry) []index.Pair {
	t := x.cfg.Threshold
	// Pairs grouped by A, so A's entry stays cached while its candidates are verified.
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].A != ps[j].A {
			return ps[i].A < ps[j].A
		}
		return ps[i].B < ps[j].B
	})
	cache := map[index.ID]*index.Entry{}
	get := func(id index.ID) *index.Entry {
		if self != nil && len(ps) > 0 && id == ps[0].A {
			return self
		}
		if e, ok := cache[id]; ok {
			return e
		}
		if len(cache) >= 1024 {
			clear(cache) // bounded memory at mount: about 17 KB an entry
		}
		var p *index.Entry
		if e, ok := x.entryOf(id); ok {
			p = &e
		}
		cache[id] = p
		return p
	}
	out := ps[:0]
	for _, p := range ps {
		if p.Score >= t {
			out = append(out, p)
			continue
		}
		a, b := get(p.A), get(p.B)
		if a != nil && b != nil && verifyEntries(*a, *b) {
			out = append(out, p)
		}
	}
	return out
}
