package vault

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/fs/core"
)

// closeCounter counts Close calls of the store it wraps.
type closeCounter struct {
	backend.Store
	closed *int
}

func (c closeCounter) Close() error { *c.closed++; return c.Store.Close() }

// TestUnlockOpenClose: the open sequence on a real local store with a real vault. A wrong
// passphrase gives exactly keyring.ErrWrongPassphrase and closes the store; a failing
// passphrase source closes it too; the passphrase is cleared after use; the namespace opens,
// and Close closes it, wipes the keys and closes the store once.
func TestUnlockOpenClose(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyring.Create(ctx, st, []byte("right passphrase"), keyring.CreateOptions{KDF: keyring.MinKDF})
	if err != nil {
		t.Fatal(err)
	}
	keys.Wipe()
	st.Close()

	closed := 0
	cfg := func(pass func() ([]byte, error)) Config {
		return Config{URL: dir,
			OpenStore: func(ctx context.Context, url string) (backend.Store, error) {
				s, err := local.Open(url)
				return closeCounter{s, &closed}, err
			},
			Passphrase: func(context.Context, backend.Store) ([]byte, error) { return pass() }}
	}

	if _, err := Unlock(ctx, cfg(func() ([]byte, error) { return []byte("wrong passphrase"), nil })); err != keyring.ErrWrongPassphrase {
		t.Fatalf("wrong passphrase: %v, want exactly keyring.ErrWrongPassphrase", err)
	}
	if closed != 1 {
		t.Fatalf("wrong passphrase: the store was closed %d times, want 1", closed)
	}
	errNone := errors.New("no passphrase")
	if _, err := Unlock(ctx, cfg(func() ([]byte, error) { return nil, errNone })); !errors.Is(err, errNone) || closed != 2 {
		t.Fatalf("failing passphrase source: %v, store closed %d times", err, closed)
	}

	var given []byte
	v, err := Unlock(ctx, cfg(func() ([]byte, error) { given = []byte("right passphrase"); return given, nil }))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range given {
		if b != 0 {
			t.Fatalf("the passphrase was not cleared: %q", given)
		}
	}
	if err := v.Open(ctx, core.Options{CacheDir: filepath.Join(t.TempDir(), "cache"), RefreshInterval: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.FS.GetAttr(core.RootIno); err != nil {
		t.Fatalf("the namespace does not answer: %v", err)
	}
	mk := v.Keys.MasterKey
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	for _, b := range mk {
		if b != 0 {
			t.Fatal("Close did not wipe the keys")
		}
	}
	if v.FS != nil || closed != 3 {
		t.Fatalf("after Close: FS %v, store closed %d times (want 3 in all)", v.FS, closed)
	}
	if err := v.CloseFS(); err != nil {
		t.Fatalf("CloseFS after Close: %v", err)
	}
}
