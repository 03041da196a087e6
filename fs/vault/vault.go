// Package vault opens a vault the one way imgfs does it: the store, the keys its passphrase
// unlocks, then the namespace (fs/core) over both. The mount daemon (fs/daemon) and the CLI
// commands that work on the namespace (import, export, ls, check, gc) share it; how the
// passphrase is obtained, and what an error means to the user, is theirs (docs/cli.md).
package vault

import (
	"context"
	"errors"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/storeurl"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/fs/core"
)

// Config says where the vault is and how to get its passphrase.
type Config struct {
	// URL is the store URL ("" = the default local store, storeurl.Default).
	URL string
	// OpenStore opens URL (nil = storeurl.Open); the CLI passes one that explains failures.
	OpenStore func(ctx context.Context, url string) (backend.Store, error)
	// Passphrase returns the passphrase of the store's vault, or an error (no vault, nothing
	// to read a passphrase from). The caller may create the vault first. Unlock clears the
	// returned bytes.
	Passphrase func(ctx context.Context, store backend.Store) ([]byte, error)
}

// Vault is an open store with its unlocked keys and, after Open, its namespace.
type Vault struct {
	URL   string
	Store backend.Store
	Keys  *keyring.Keys
	FS    *core.FS // nil until Open, and after CloseFS
}

// Unlock opens the store and unlocks its vault (UnlockKeys).
func Unlock(ctx context.Context, cfg Config) (*Vault, error) {
	open := cfg.OpenStore
	if open == nil {
		open = storeurl.Open
	}
	store, err := open(ctx, cfg.URL)
	if err != nil {
		return nil, err
	}
	keys, err := UnlockKeys(ctx, store, cfg.Passphrase)
	if err != nil {
		store.Close()
		return nil, err
	}
	return &Vault{URL: cfg.URL, Store: store, Keys: keys}, nil
}

// UnlockKeys unlocks the vault of an open store with the passphrase from passphrase, and
// clears it. A wrong passphrase gives exactly keyring.ErrWrongPassphrase (one generic
// message, nothing about which check failed).
func UnlockKeys(ctx context.Context, store backend.Store, passphrase func(context.Context, backend.Store) ([]byte, error)) (*keyring.Keys, error) {
	pass, err := passphrase(ctx, store)
	if err != nil {
		return nil, err
	}
	keys, err := keyring.Unlock(ctx, store, pass)
	clear(pass)
	if errors.Is(err, keyring.ErrWrongPassphrase) {
		return nil, keyring.ErrWrongPassphrase
	}
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// Open opens the namespace with opts. A cache directory in use by another process gives an
// error matching syscall.EBUSY; a writer beside a live writer lease, core.ErrLeaseHeld.
func (v *Vault) Open(ctx context.Context, opts core.Options) error {
	fsys, err := core.Open(ctx, v.Store, v.Keys, opts)
	if err != nil {
		return err
	}
	v.FS = fsys
	return nil
}

// CloseFS closes the namespace (a writer commits its pending work first); a no-op when it is
// not open.
func (v *Vault) CloseFS() error {
	if v.FS == nil {
		return nil
	}
	err := v.FS.Close()
	v.FS = nil
	return err
}

// Close closes the namespace, wipes the keys and closes the store.
func (v *Vault) Close() error {
	err := v.CloseFS()
	v.Keys.Wipe()
	if cerr := v.Store.Close(); err == nil {
		err = cerr
	}
	return err
}
