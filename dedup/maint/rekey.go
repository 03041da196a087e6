package maint

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// imgfs rekey (docs/cli.md) holds the gc lock while it runs, so no gc deletes the objects it
// writes before its new root references them, and no second rekey starts.

// TakeLock takes the gc lock for owner (as GC does; BreakLock removes an existing one first).
func TakeLock(ctx context.Context, store backend.Store, keys *keyring.Keys, owner string, breakLock bool) error {
	return lock(ctx, store, keys, GCOptions{Owner: owner, Now: time.Now, BreakLock: breakLock})
}

// LockHolder returns the owner recorded in the gc lock and whether the lock exists. The
// owner is "" when the lock does not open under keys (written under other keys).
func LockHolder(ctx context.Context, store backend.Store, keys *keyring.Keys) (owner string, held bool, err error) {
	b, err := backend.ReadSmall(ctx, store, LockName, maxMetaObject)
	if errors.Is(err, backend.ErrNotExist) {
		return "", false, nil
	}
	if err != nil && !errors.Is(err, backend.ErrTooLarge) { // too large: does not open
		return "", false, fmt.Errorf("maint: reading the gc lock: %w", err)
	}
	p, err := dedup.OpenMeta(keys.MetaKey, lockKind, dedup.Hash(b), b)
	if err != nil {
		return "", true, nil
	}
	owner, _, _ = strings.Cut(string(p), "\n")
	return owner, true, nil
}

// ReleaseLock removes the gc lock.
func ReleaseLock(ctx context.Context, store backend.Store) error {
	if err := store.Delete(ctx, LockName); err != nil && !errors.Is(err, backend.ErrNotExist) {
		return fmt.Errorf("maint: removing the gc lock: %w", err)
	}
	return nil
}

// DropForeignState deletes the gc state objects that do not open under keys (after a
// rekey: those of the old keys; their marks only restart the grace period).
func DropForeignState(ctx context.Context, store backend.Store, keys *keyring.Keys) (int, error) {
	var names []string
	if err := store.List(ctx, StatePrefix, func(i backend.Info) error {
		names = append(names, i.Name)
		return nil
	}); err != nil {
		return 0, fmt.Errorf("maint: listing gc state: %w", err)
	}
	n := 0
	for _, name := range names {
		b, err := backend.ReadSmall(ctx, store, name, maxMetaObject)
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err != nil && !errors.Is(err, backend.ErrTooLarge) { // too large: does not open
			return n, fmt.Errorf("maint: reading gc state: %w", err)
		}
		if _, err := dedup.OpenMeta(keys.MetaKey, stateKind, dedup.Hash(b), b); err == nil {
			continue
		}
		if err := store.Delete(ctx, name); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return n, fmt.Errorf("maint: removing old gc state: %w", err)
		}
		n++
	}
	return n, nil
}
