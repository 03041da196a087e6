package daemon

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

// keyCheckEvery: one LIST and one or two GETs per check, every 12th refresh poll (a minute
// at the default --refresh 5s), or every minute when refresh is off.
func keyCheckEvery(refresh time.Duration) time.Duration {
	if refresh <= 0 {
		return time.Minute
	}
	return 12 * refresh
}

// startKeyWatch watches the vault's key generation until the daemon finishes.
func (d *daemon) startKeyWatch(ctx context.Context) error {
	w, err := NewKeyWatch(ctx, d.o.Vault.Store, d.log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.keyWatch, d.stopKeyWatch = w, cancel
	go w.Run(ctx, keyCheckEvery(d.o.Refresh))
	return nil
}

// KeyWatch notices a newer key generation in the store than the one a mount opened with.
type KeyWatch struct {
	store   backend.Store
	log     *slog.Logger
	base    uint64
	rekeyed atomic.Uint64 // the newer generation seen, 0 = none
}

// NewKeyWatch reads the store's current key generation as the mount's own.
func NewKeyWatch(ctx context.Context, store backend.Store, log *slog.Logger) (*KeyWatch, error) {
	g, err := keyring.CurrentGeneration(ctx, store)
	if err != nil {
		return nil, err
	}
	return &KeyWatch{store: store, log: log, base: g}, nil
}

// Check looks once; it reports whether the vault was rekeyed since the mount.
func (w *KeyWatch) Check(ctx context.Context) bool {
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

// Run checks every interval until ctx ends or a rekey is seen.
func (w *KeyWatch) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if w.Check(ctx) {
				return
			}
		}
	}
}

// Status is the key line of imgfs status.
func (w *KeyWatch) Status() string {
	if g := w.rekeyed.Load(); g != 0 {
		return fmt.Sprintf("generation %d is OLD: the vault was rekeyed (generation %d); unmount and mount again", w.base, g)
	}
	return fmt.Sprintf("generation %d", w.base)
}
