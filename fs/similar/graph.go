package similar

import (
	"time"

	"github.com/imgfs/imgfs/embed/index"
	"github.com/imgfs/imgfs/fs/core"
)

// buildGraph computes every loaded vector's neighbours (all pairs at the threshold).
func (x *Indexer) buildGraph() {
	defer x.wg.Done()
	defer close(x.graphReady)
	t0 := time.Now()
	f := x.floor()
	pairs := x.keepVerified(bestPairs(append(x.idx.AllPairs(f), x.mirrorPairs(f)...)), nil)
	x.mu.Lock()
	for _, p := range pairs {
		x.addEdgeLocked(p.A, p.B, p.Score)
	}
	x.gen++
	x.mu.Unlock()
	x.log.Info("similar: graph built", "pairs", len(pairs), "took", time.Since(t0).Round(time.Millisecond))
}

// GraphReady is closed once the graph of the embeddings loaded at Start is built.
func (x *Indexer) GraphReady() <-chan struct{} { return x.graphReady }

func (x *Indexer) addEdgeLocked(a, b index.ID, s float32) {
	set := func(from, to index.ID) {
		ns := x.nbr[from]
		for i := range ns {
			if ns[i].ID == to {
				ns[i].Score = max(ns[i].Score, s) // the better of the two alignments
				return
			}
		}
		x.nbr[from] = append(ns, index.Match{ID: to, Score: s})
	}
	set(a, b)
	set(b, a)
}

func (x *Indexer) dropNodeLocked(id index.ID) {
	for _, m := range x.nbr[id] {
		ns := x.nbr[m.ID]
		for i := range ns {
			if ns[i].ID == id {
				ns = append(ns[:i], ns[i+1:]...)
				break
			}
		}
		if len(ns) == 0 {
			delete(x.nbr, m.ID)
		} else {
			x.nbr[m.ID] = ns
		}
	}
	delete(x.nbr, id)
}

// addVector puts id's entry (its vector; its mirror vector and Local descriptors, or nil)
// into the index and the graph.
func (x *Indexer) addVector(id index.ID, ent index.Entry) {
	x.addMu.Lock()
	defer x.addMu.Unlock()
	x.idx.Add(id, ent.Vector)
	ms := x.neighbours(id, ent.Mirror, x.floor())
	ps := make([]index.Pair, len(ms))
	for i, m := range ms {
		ps[i] = index.Pair{A: id, B: m.ID, Score: m.Score}
	}
	ps = x.keepVerified(ps, &ent)
	x.mu.Lock()
	x.dropNodeLocked(id)
	for _, p := range ps {
		x.addEdgeLocked(id, p.B, p.Score)
	}
	delete(x.noImage, id)
	delete(x.stale, id)
	x.gen++
	x.mu.Unlock()
}

func (x *Indexer) setInoLocked(ino core.Ino, id index.ID) {
	if old, ok := x.inoID[ino]; ok {
		if old == id {
			return
		}
		x.removeInoLocked(old, ino)
	}
	x.inoID[ino] = id
	x.inos[id] = append(x.inos[id], ino)
}

func (x *Indexer) removeInoLocked(id index.ID, ino core.Ino) {
	l := x.inos[id]
	for i, o := range l {
		if o == ino {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(x.inos, id)
	} else {
		x.inos[id] = l
	}
}
