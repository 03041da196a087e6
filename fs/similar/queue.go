package similar

import (
	"context"
	"errors"

	"github.com/imgfs/imgfs/embed/index"
	"github.com/imgfs/imgfs/fs/core"
)

type qitem struct {
	ino   core.Ino
	force bool
}

// OnSealed is core.Options.OnSealed: it queues ino for embedding (persistently once started).
func (x *Indexer) OnSealed(ino core.Ino) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.started {
		x.early = append(x.early, ino)
		return
	}
	x.enqueueLocked(ino, false, true)
}

func (x *Indexer) enqueueLocked(ino core.Ino, force, persist bool) {
	if x.closed {
		return
	}
	if persist {
		v := []byte{0}
		if force {
			v[0] = 1
		}
		if err := x.v.PutAux(TableQueue, inoKey(ino), v); err != nil {
			x.log.Warn("similar: queue", "ino", ino, "err", err)
		}
	}
	if x.queued[ino] {
		if force {
			for i := range x.queue {
				if x.queue[i].ino == ino {
					x.queue[i].force = true
				}
			}
		}
		return
	}
	x.queued[ino] = true
	x.queue = append(x.queue, qitem{ino, force})
	x.cond.Broadcast()
}

func (x *Indexer) worker() {
	defer x.wg.Done()
	for {
		x.mu.Lock()
		for len(x.queue) == 0 && !x.closed {
			x.cond.Wait()
		}
		if x.closed {
			x.mu.Unlock()
			return
		}
		it := x.queue[0]
		x.queue = x.queue[1:]
		delete(x.queued, it.ino)
		x.busy++
		x.running[it.ino] = true
		x.mu.Unlock()

		x.process(it)

		x.mu.Lock()
		x.busy--
		delete(x.running, it.ino)
		x.done++
		x.gen++
		x.cond.Broadcast()
		x.mu.Unlock()
	}
}

func (x *Indexer) process(it qitem) {
	v := x.v
	defer func() {
		x.mu.Lock()
		requeued := x.queued[it.ino]
		x.mu.Unlock()
		if !requeued {
			v.DeleteAux(TableQueue, inoKey(it.ino))
		}
	}()
	cid, ok, err := v.ContentID(it.ino)
	if err != nil || !ok {
		// Unlinked, not a regular file, or changed again (a new OnSealed follows).
		return
	}
	defer x.dropPlaintext(cid) // content already embedded, or not an image: the hand-off goes
	id := idOf(cid)
	x.mu.Lock()
	for x.working[id] && !x.closed {
		x.cond.Wait() // a byte-identical copy is being embedded: reuse its result
	}
	x.setInoLocked(it.ino, id)
	again := it.force && x.redone[id] != x.round
	have := x.idx.Has(id) && !again
	skip := x.noImage[id] && !again
	if again {
		x.redone[id] = x.round
	}
	if !have && !skip {
		x.working[id] = true
	}
	x.mu.Unlock()
	if have || skip {
		return
	}
	defer func() {
		x.mu.Lock()
		delete(x.working, id)
		x.cond.Broadcast()
		x.mu.Unlock()
	}()
	if !again {
		if ent, ok := x.storedEntry(cid); ok {
			x.mu.Lock()
			x.cids[id] = cid
			x.mu.Unlock()
			x.addVector(id, ent)
			return
		}
	}
	ent, err := x.embedIno(it.ino, cid)
	if err != nil {
		var nie notImageError
		if errors.As(err, &nie) {
			x.log.Info("similar: not an image, skipped", "ino", it.ino, "reason", nie.msg)
			x.noteNotImage(it.ino, cid, nie.msg, nie.image)
			v.PutAux(TableNoImage, cid[:], []byte(x.emb.ID()))
			x.mu.Lock()
			x.noImage[id] = true
			x.skipped++
			x.mu.Unlock()
			return
		}
		// A read error: logged once; the file is retried at the next mount (Start queues
		// every file with neither an embedding nor a not-an-image mark).
		x.log.Warn("similar: cannot read file, skipped until the next mount", "ino", it.ino, "err", err)
		x.noteReadError(it.ino, err)
		return
	}
	// The content may have changed while we read it: only store what we read.
	cid2, ok, err := v.ContentID(it.ino)
	if err != nil || !ok || cid2 != cid {
		return
	}
	b, err := index.EncodeEntry(ent)
	if err != nil {
		x.log.Warn("similar: bad embedding", "ino", it.ino, "err", err)
		return
	}
	if err := v.PutAux(TableEmb, cid[:], b); err != nil {
		x.log.Warn("similar: store embedding", "ino", it.ino, "err", err)
		return
	}
	x.mu.Lock()
	x.cids[id] = cid
	x.mu.Unlock()
	x.addVector(id, ent)
}

// Wait returns when the queue is empty and no file is being embedded (for `imgfs sync`),
// or when ctx ends.
//
// It first queues every sealed file that has neither an embedding nor a not-an-image mark:
// the core may deliver OnSealed from a goroutine after its own Sync returned, and this
// makes `imgfs sync` independent of that timing.
func (x *Indexer) Wait(ctx context.Context) error {
	x.catchUp()
	stop := context.AfterFunc(ctx, func() {
		x.mu.Lock()
		x.cond.Broadcast()
		x.mu.Unlock()
	})
	defer stop()
	x.mu.Lock()
	defer x.mu.Unlock()
	for len(x.queue)+x.busy+len(x.early) > 0 && !x.closed {
		if err := ctx.Err(); err != nil {
			return err
		}
		x.cond.Wait()
	}
	return ctx.Err()
}

// catchUp queues sealed files the indexer has not seen (see Wait).
func (x *Indexer) catchUp() {
	x.mu.Lock()
	v, ok := x.v, x.started && !x.closed
	x.mu.Unlock()
	if !ok {
		return
	}
	type f struct {
		ino core.Ino
		id  index.ID
	}
	var fs []f
	if err := v.ForEachFile(func(ino core.Ino, cid [32]byte) error {
		fs = append(fs, f{ino, idOf(cid)})
		return nil
	}); err != nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range fs {
		if !x.idx.Has(e.id) && !x.noImage[e.id] && !x.queued[e.ino] && !x.running[e.ino] {
			x.enqueueLocked(e.ino, false, true)
		}
	}
}

// Reindex queues every sealed file for embedding again (after a model change), with force
// set, and returns how many it queued.
func (x *Indexer) Reindex() (int, error) {
	var inos []core.Ino
	if err := x.v.ForEachFile(func(ino core.Ino, _ [32]byte) error {
		inos = append(inos, ino)
		return nil
	}); err != nil {
		return 0, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.round++
	for _, ino := range inos {
		x.enqueueLocked(ino, true, true)
	}
	return len(inos), nil
}
