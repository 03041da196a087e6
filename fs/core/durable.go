package core

import (
	"context"
	"sync"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
)

// Store durability batched with the group commit (docs/core.md, "What close and fsync
// guarantee"). On a store that can defer it (backend.UnsyncedPutter: a local directory), the
// background sealers store chunks without fsyncs and do not swap the inode to the chunk list
// at once: the swap waits here until one SyncPuts (one syncfs(2)) has made every chunk
// stored so far durable, so the working copy, its journal and every root built from it
// reference only durable objects. Until the swap, reads come from the spool, which stays.
// Fsync and Sync seal with durable Puts and flush these waiting swaps first.

// deferredSwap is a sealed journal record whose swap waits for the store's sync.
type deferredSwap struct {
	id      uint64
	rec     pendingRec
	content dedup.Content
}

// durable is the state of the deferred store syncs (nil fields: the store has none).
type durable struct {
	store backend.UnsyncedPutter // nil: every Put is durable when it returns
	mu    sync.Mutex
	swaps []deferredSwap
	ids   map[uint64]bool
	kick  chan struct{}
	flush sync.Mutex // one flush at a time: a caller that finds the list empty waits for the flush in progress
}

func (f *FS) initDurable() {
	if u, ok := f.store.(backend.UnsyncedPutter); ok && !f.ro {
		f.dur.store = u
		f.dur.ids = map[uint64]bool{}
		f.dur.kick = make(chan struct{}, 1)
	}
}

// lazyPuts reports whether a seal on ctx stores its chunks unsynced: background sealers on a
// store that can defer durability.
func (f *FS) lazyPuts(ctx context.Context) bool {
	return f.dur.store != nil && f.background(ctx)
}

// bgKey marks a context derived from f.ctx by a background seal (sealOne).
type bgKey struct{}

// background reports whether ctx is a background worker's (f.ctx, or a seal derived from it),
// not a caller's (Fsync, Sync).
func (f *FS) background(ctx context.Context) bool {
	return ctx == f.ctx || ctx.Value(bgKey{}) != nil
}

// deferSwap queues a sealed record for the next flush.
func (f *FS) deferSwap(id uint64, rec pendingRec, content dedup.Content) {
	f.dur.mu.Lock()
	f.dur.swaps = append(f.dur.swaps, deferredSwap{id, rec, content})
	f.dur.ids[id] = true
	f.dur.mu.Unlock()
	select {
	case f.dur.kick <- struct{}{}:
	default:
	}
}

// isDeferred reports whether record id is sealed and waits for the store's sync.
func (f *FS) isDeferred(id uint64) bool {
	if f.dur.store == nil {
		return false
	}
	f.dur.mu.Lock()
	defer f.dur.mu.Unlock()
	return f.dur.ids[id]
}

// flushDeferred makes the chunks stored so far durable (one SyncPuts) and swaps the records
// sealed before it. On failure the swaps stay queued.
func (f *FS) flushDeferred(ctx context.Context) error {
	if f.dur.store == nil {
		return nil
	}
	f.dur.flush.Lock()
	defer f.dur.flush.Unlock()
	f.dur.mu.Lock()
	swaps := f.dur.swaps
	f.dur.swaps = nil
	f.dur.mu.Unlock()
	if len(swaps) == 0 {
		return nil
	}
	err := f.dur.store.SyncPuts(ctx)
	done := 0
	for err == nil && done < len(swaps) {
		s := swaps[done]
		if err = f.swapSealed(ctx, s.id, s.rec, s.content); err == nil {
			done++
		}
	}
	f.dur.mu.Lock()
	defer f.dur.mu.Unlock()
	for _, s := range swaps[:done] {
		delete(f.dur.ids, s.id)
	}
	if err != nil {
		f.dur.swaps = append(swaps[done:], f.dur.swaps...)
	}
	return err
}

// syncStore makes every unsynced Put so far durable, for a seal on the caller's path (Fsync,
// Sync) that found chunks existing: a background sealer may have stored them unsynced.
func (f *FS) syncStore(ctx context.Context) error {
	if f.dur.store == nil {
		return nil
	}
	return f.dur.store.SyncPuts(ctx)
}

// durableFlusher flushes the deferred swaps once per group-commit window after the first
// one is queued (the swaps then join the batch that commits at most a window later).
func (f *FS) durableFlusher() {
	defer f.wg.Done()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.dur.kick:
		}
		t := time.NewTimer(f.window)
		select {
		case <-f.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := f.flushDeferred(f.ctx); err != nil && f.ctx.Err() == nil {
			f.log.Warn("core: syncing the store failed; will retry", "err", err)
			time.AfterFunc(5*time.Second, func() {
				select {
				case f.dur.kick <- struct{}{}:
				default:
				}
			})
		}
	}
}
