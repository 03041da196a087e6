package similar

import (
	"io"
	"sort"

	"github.com/imgfs/imgfs/embed"
	"github.com/imgfs/imgfs/embed/index"
)

// Mirror matching (docs/similar.md): a photo and its left-right mirror image embed far
// apart, so each photo is also embedded mirrored. Only the plain vector is searched (the
// index keeps one vector per photo); the mirror vector is stored next to it and queries
// the index when the photo is added and when the graph is built at mount. A mirrored copy
// is found whichever of the two arrives first: its mirror vector is close to the other's
// plain vector.

// MirrorEmbedder is an Embedder that also embeds the mirror image.
type MirrorEmbedder interface {
	EmbedReaderMirror(r io.Reader) (vec, mirror []float32, err error)
}

func (e modelEmbedder) EmbedReaderMirror(r io.Reader) ([]float32, []float32, error) {
	emb, err := embed.EmbedFile(e.m, r)
	if err != nil {
		return nil, nil, err
	}
	return emb.Vector, emb.Mirror, nil
}

// neighbours returns the matches of id (whose vector is in the index) at threshold t,
// under either alignment: the best score per photo, id itself left out.
func (x *Indexer) neighbours(id index.ID, mirror []float32, t float32) []index.Match {
	ms, _ := x.idx.QueryID(id, 0, t)
	if mirror == nil {
		return ms
	}
	mm, err := x.idx.Query(mirror, 0, t)
	if err != nil {
		return ms
	}
	best := map[index.ID]float32{}
	for _, l := range [][]index.Match{ms, mm} {
		for _, m := range l {
			if m.ID != id {
				best[m.ID] = max(best[m.ID], m.Score)
			}
		}
	}
	out := make([]index.Match, 0, len(best))
	for i, s := range best {
		out = append(out, index.Match{ID: i, Score: s})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// storedMirror reads the mirror vector stored with cid's embedding (nil when there is none).
func (x *Indexer) storedMirror(cid [32]byte) []float32 {
	b, err := x.v.GetAux(TableEmb, cid[:])
	if err != nil || b == nil {
		return nil
	}
	e, err := index.DecodeEntry(b)
	if err != nil || e.Model != x.emb.ID() {
		return nil
	}
	return e.Mirror
}

// mirrorPairs queries the index with every stored mirror vector (graph build at mount).
func (x *Indexer) mirrorPairs(t float32) []index.Pair {
	var out []index.Pair
	model := x.emb.ID()
	x.v.ForEachAux(TableEmb, func(k, val []byte) error {
		if len(k) != 32 {
			return nil
		}
		e, err := index.DecodeEntry(val)
		if err != nil || e.Mirror == nil || e.Model != model {
			return nil
		}
		id := idOf([32]byte(k))
		if !x.idx.Has(id) {
			return nil
		}
		ms, err := x.idx.Query(e.Mirror, 0, t)
		if err != nil {
			return nil
		}
		for _, m := range ms {
			if m.ID != id {
				out = append(out, index.Pair{A: id, B: m.ID, Score: m.Score})
			}
		}
		return nil
	})
	return out
}

// bestPairs keeps one pair per two photos (A < B), with the better score.
func bestPairs(ps []index.Pair) []index.Pair {
	best := make(map[[2]index.ID]float32, len(ps))
	for _, p := range ps {
		k := [2]index.ID{min(p.A, p.B), max(p.A, p.B)}
		if s, ok := best[k]; !ok || p.Score > s {
			best[k] = p.Score
		}
	}
	out := make([]index.Pair, 0, len(best))
	for k, s := range best {
		out = append(out, index.Pair{A: k[0], B: k[1], Score: s})
	}
	return out
}
