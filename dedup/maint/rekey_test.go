package maint

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/internal/memstore"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// TestRekeyLockAndState: the lock imgfs rekey takes is gc's (gc is refused while it is
// held), its owner reads back only under the keys that wrote it, and DropForeignState
// removes the gc state of other keys and keeps this key's.
func TestRekeyLockAndState(t *testing.T) {
	st := memstore.New()
	old, next := testKeys(t, keyring.ModeVault), testKeys(t, keyring.ModeVault)
	if _, held, err := LockHolder(ctx, st, old); err != nil || held {
		t.Fatalf("lock before any: %v %v", held, err)
	}
	if err := TakeLock(ctx, st, old, "imgfs rekey on h pid 1", false); err != nil {
		t.Fatal(err)
	}
	if err := TakeLock(ctx, st, old, "another", false); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	live := func(context.Context) (map[string]bool, error) { return map[string]bool{}, nil }
	if _, err := GC(ctx, st, old, GCOptions{Live: live}); !errors.Is(err, ErrLocked) {
		t.Fatalf("gc during a rekey: %v", err)
	}
	owner, held, err := LockHolder(ctx, st, old)
	if err != nil || !held || owner != "imgfs rekey on h pid 1" {
		t.Fatalf("owner %q %v %v", owner, held, err)
	}
	if owner, held, _ := LockHolder(ctx, st, next); !held || owner != "" {
		t.Fatalf("the owner reads under other keys: %q", owner)
	}
	if err := ReleaseLock(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := ReleaseLock(ctx, st); err != nil {
		t.Fatal("releasing a released lock:", err)
	}

	marks := map[string]time.Time{dedup.MetaName(dedup.Locator{1}): time.Unix(5, 0)}
	if err := saveState(ctx, st, old, marks, nil, time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := saveState(ctx, st, next, marks, nil, time.Unix(2, 0)); err != nil {
		t.Fatal(err)
	}
	n, err := DropForeignState(ctx, st, next)
	if err != nil || n != 1 {
		t.Fatalf("dropped %d: %v", n, err)
	}
	got, _, err := loadState(ctx, st, next)
	if names := st.Names(StatePrefix); len(names) != 1 || err != nil || len(got) != 1 {
		t.Fatalf("gc state left: %v (%d marks, %v)", names, len(got), err)
	}
}
