package keyring

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/imgfs/imgfs/dedup/internal/memstore"
)

var ctx = context.Background()

func TestCreateUnlock(t *testing.T) {
	st := memstore.New()
	k, err := Create(ctx, st, []byte("correct horse"), CreateOptions{KDF: MinKDF})
	if err != nil {
		t.Fatal(err)
	}
	if k.Mode != ModeVault || len(k.ConvergenceSecret) != 32 || len(k.MetaKey) != 32 || len(k.LocalKey) != 32 {
		t.Fatalf("bad keys: mode %s", k.Mode)
	}
	u, err := Unlock(ctx, st, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]Secret{{k.MasterKey, u.MasterKey}, {k.ConvergenceSecret, u.ConvergenceSecret}, {k.MetaKey, u.MetaKey}, {k.HeaderKey, u.HeaderKey}, {k.LocalKey, u.LocalKey}} {
		if !bytes.Equal(pair[0], pair[1]) {
			t.Fatal("unlocked keys differ from created keys")
		}
	}
	if u.VaultID != k.VaultID || u.Mode != k.Mode {
		t.Fatal("vault id or mode differ")
	}
	if _, err := Unlock(ctx, st, []byte("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := Create(ctx, st, []byte("x"), CreateOptions{KDF: MinKDF}); !errors.Is(err, ErrVaultExists) {
		t.Fatalf("second Create: %v", err)
	}
	if _, err := Unlock(ctx, memstore.New(), []byte("x")); !errors.Is(err, ErrNoVault) {
		t.Fatalf("empty store: %v", err)
	}
}
