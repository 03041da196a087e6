// Package keyring holds the vault's keys: the vault header, passphrase key slots
// (Argon2id + AES-256-GCM + key commitment) and the Secret type that never prints.
// CONTRACT (owned by the crypto helper; signatures may grow, not change without updating callers).
package keyring

import (
	"context"
	"errors"

	"github.com/imgfs/imgfs/backend"
)

// Secret is key material. String, GoString, Format, MarshalJSON and MarshalText print "[redacted]".
type Secret []byte

// Convergence modes (SECURITY.md 4.1).
const (
	ModeVault  = "vault"
	ModeGroup  = "group"
	ModeGlobal = "global"
)

// Keys are the unlocked keys of one vault.
type Keys struct {
	VaultID           [16]byte
	Mode              string
	MasterKey         Secret // MK
	ConvergenceSecret Secret // CS
	MetaKey           Secret // K_meta
	HeaderKey         Secret // K_hdr
	LocalKey          Secret // K_local: spool and cache encryption
}

// KDFParams are Argon2id parameters stored in a slot.
type KDFParams struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// CreateOptions configure a new vault.
type CreateOptions struct {
	Mode              string // ModeVault (default), ModeGroup, ModeGlobal
	ConvergenceSecret Secret // required for ModeGroup (imported), ignored otherwise
	KDF               KDFParams
}

// ErrWrongPassphrase is the one generic error for a wrong passphrase or a damaged header/slot.
var ErrWrongPassphrase = errors.New("wrong passphrase or damaged vault header")

// ErrNoVault: the store holds no vault header.
var ErrNoVault = errors.New("no imgfs vault in this store")

// Create writes a new vault header and one key slot to the store. Fails if a vault exists.
func Create(ctx context.Context, store backend.Store, passphrase []byte, opts CreateOptions) (*Keys, error) {
	panic("unimplemented")
}

// Unlock reads the header and slots and returns the keys, or ErrWrongPassphrase / ErrNoVault.
func Unlock(ctx context.Context, store backend.Store, passphrase []byte) (*Keys, error) {
	panic("unimplemented")
}
