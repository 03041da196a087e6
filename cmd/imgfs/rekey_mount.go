package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// A mount notices a rekey by another device (docs/cli.md "rekey"): its keys are the old
// ones, so it can no longer read what is stored after the switch nor store its own
// changes. It says so in the log, once, and in imgfs status, with what to do: unmount and
// mount again (the cache is then rebuilt under the new key).

// generationCheckEvery: one LIST and one or two GETs per check, every 12th refresh poll
// (a minute at the default --refresh 5s), or every minute when refresh is off.
func generationCheckEvery() time.Duration {
	if refreshEvery <= 0 {
		return time.Minute
	}
	return 12 * refreshEvery
}

func init() {
	registerMountHook(mountHook{Name: "key generation", AfterOpen: func(e *mountEnv) error {
		ctx, cancel := context.WithCancel(context.Background())
		w, err := newGenerationWatch(ctx, e.Store, e.Log)
		if err != nil {
			cancel()
			return err
		}
		go w.run(ctx, generationCheckEvery())
		e.AddStatus(func() map[string]any { return map[string]any{"key": w.status()} })
		e.OnClose(func() error { cancel(); return nil })
		return nil
	}})
}

type generationWatch struct {
	store   backend.Store
	log     *slog.Logger
	base    uint64
	rekeyed atomic.Uint64 // the newer generation seen, 0 = none
}

func newGenerationWatch(ctx context.Context, store backend.Store, log *slog.Logger) (*generationWatch, error) {
	g, err := keyring.CurrentGeneration(ctx, store)
	if err != nil {
		return nil, err
	}
	return &generationWatch{store: store, log: log, base: g}, nil
}

// check looks once; it reports whether the vault was rekeyed since the mount.
func (w *generationWatch) check(ctx context.Context) bool {
	if w.rekeyed.Load() != 0 {
		return true
	}
	g, err := keyring.CurrentGeneration(ctx, w.store)
	if err != nil || g <= w.base {
		return false // an unreachable store is the refresher's to report
	}
	w.rekeyed.Store(g)
	w.log.Error("the vault was rekeyed by another device (imgfs rekey): this mount still has the old key, "+
		"it cannot see newer changes and cannot store its own; unmount and mount again", "generation", g)
	return true
}

func (w *generationWatch) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if w.check(ctx) {
				return
			}
		}
	}
}

func (w *generationWatch) status() string {
	if g := w.rekeyed.Load(); g != 0 {
		return fmt.Sprintf("generation %d is OLD: the vault was rekeyed (generation %d); unmount and mount again", w.base, g)
	}
	return fmt.Sprintf("generation %d", w.base)
}
