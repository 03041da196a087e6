// Package keyring holds the vault's keys: the vault header, passphrase key slots
// (Argon2id + AES-256-GCM + key commitment) and the Secret type that never prints.
//
// Store layout (docs/format.md): one immutable header object per key generation ("vault",
// then "h/<gen>" after each imgfs rekey, generation.go) and one immutable object per
// passphrase slot under "k/". Changing a passphrase adds a slot and then removes the old
// one; a header is never rewritten.
package keyring

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"

	"github.com/imgfs/imgfs/backend"
)

// Secret is key material. String, GoString, Format, MarshalJSON and MarshalText print "[redacted]".
type Secret []byte

// Convergence modes (docs/format.md §2).
const (
	ModeVault  = "vault"
	ModeGroup  = "group"
	ModeGlobal = "global"
)

// Keys are the unlocked keys of one vault.
type Keys struct {
	VaultID [16]byte
	// Generation is the header generation these keys belong to (0 = the original header;
	// each imgfs rekey adds one, docs/format.md §3.1).
	Generation        uint64
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
	Mode              string    // ModeVault (default), ModeGroup, ModeGlobal
	ConvergenceSecret Secret    // required for ModeGroup (imported), ignored otherwise
	KDF               KDFParams // zero value = DefaultKDF
}

// ErrWrongPassphrase is the one generic error for a wrong passphrase or a damaged header/slot.
var ErrWrongPassphrase = errors.New("wrong passphrase or damaged vault header")

// ErrNoVault: the store holds no vault header.
var ErrNoVault = errors.New("no imgfs vault in this store")

// ErrVaultExists: Create found a vault header already in the store.
var ErrVaultExists = errors.New("an imgfs vault already exists in this store")

// ErrLastSlot: RemoveSlot would leave the vault without any passphrase.
var ErrLastSlot = errors.New("refusing to remove the last passphrase of the vault")

// globalCSLabel: in global mode CS is a public constant (the seed paper's cross-user setting).
const globalCSLabel = "imgfs v1 global convergence secret"

// GlobalConvergenceSecret returns SHA-256("imgfs v1 global convergence secret").
func GlobalConvergenceSecret() Secret {
	h := sha256.Sum256([]byte(globalCSLabel))
	return Secret(h[:])
}

// Test hooks: the Argon2id call and the slot AEAD (T23 spies on Open through it).
var (
	argon2Key = func(pass, salt []byte, p KDFParams) []byte {
		return argon2.IDKey(pass, salt, p.Time, p.MemoryKiB, p.Threads, 64)
	}
	slotAEAD = gcm
	randRead = rand.Read // fuzz targets make vaults deterministic through it
)

// maxSlots bounds the slots Unlock tries (each costs one Argon2id).
const maxSlots = 32

// deriveKeys fills the HKDF subkeys of MK (docs/format.md §2).
func deriveKeys(mk Secret, vid [vidLen]byte, mode string) *Keys {
	return &Keys{
		VaultID:   vid,
		Mode:      mode,
		MasterKey: mk,
		MetaKey:   hkdf32(mk, vid[:], "imgfs v1 metadata"),
		HeaderKey: hkdf32(mk, vid[:], "imgfs v1 header mac"),
		LocalKey:  hkdf32(mk, vid[:], "imgfs v1 local cache"),
	}
}

// csKey encrypts CS in the header: a subkey of K_meta, so K_meta itself is only ever an
// HKDF secret.
func csKey(k *Keys) Secret { return hkdf32(k.MetaKey, k.VaultID[:], "imgfs v1 header cs") }

func randBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := randRead(b); err != nil {
		return nil, fmt.Errorf("keyring: random: %w", err)
	}
	return b, nil
}

func buildHeader(k *Keys) ([]byte, error) {
	b := make([]byte, 0, headerSize)
	b = append(b, headerMagic[:]...)
	b = append(b, formatVersion, modeBytes[k.Mode], 0, 0, 0, 0, 0, 0)
	b = append(b, k.VaultID[:]...)
	nonce, err := randBytes(12)
	if err != nil {
		return nil, err
	}
	b = append(b, nonce...)
	b = gcm(csKey(k)).Seal(b, nonce, k.ConvergenceSecret, append([]byte("imgfs v1 header cs"), b[0:32]...))
	b = append(b, mac(k.HeaderKey, []byte("imgfs v1 header mac"), b)...)
	return b, nil
}

// openHeader verifies the header MAC under k and returns CS.
func openHeader(h *header, k *Keys) (Secret, error) {
	macLabel, csLabel, macEnd, csEnd := "imgfs v1 header mac", "imgfs v1 header cs", 92, 32
	if h.gen > 0 {
		macLabel, csLabel, macEnd, csEnd = "imgfs v2 header mac", "imgfs v2 header cs", 172, 124
	}
	if !hmac.Equal(mac(k.HeaderKey, []byte(macLabel), h.raw[:macEnd]), h.mac) {
		return nil, errDamaged
	}
	cs, err := gcm(csKey(k)).Open(nil, h.nonce, h.encCS, append([]byte(csLabel), h.raw[0:csEnd]...))
	if err != nil || len(cs) != keyLen {
		return nil, errDamaged
	}
	return cs, nil
}

func buildSlot(k *Keys, pass []byte, p KDFParams) ([]byte, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if len(pass) == 0 {
		return nil, errors.New("keyring: empty passphrase")
	}
	salt, err := randBytes(32)
	if err != nil {
		return nil, err
	}
	nonce, err := randBytes(12)
	if err != nil {
		return nil, err
	}
	a := argon2Key(pass, salt, p)
	defer clear(a)
	kek, kck := a[:32], a[32:]
	mode := modeBytes[k.Mode]
	params := encodeParams(p)

	b := make([]byte, 0, slotSize)
	b = append(b, slotMagic[:]...)
	b = append(b, formatVersion, mode, 0, 0)
	b = append(b, k.VaultID[:]...)
	b = append(b, params...)
	b = append(b, 0, 0, 0)
	b = append(b, salt...)
	b = append(b, nonce...)
	b = slotAEAD(kek).Seal(b, nonce, k.MasterKey, slotAAD(k.VaultID, mode, params))
	s := &slot{raw: b, mode: mode, vid: k.VaultID, nonce: b[72:84], wrapped: b[84:132]}
	b = append(b, slotCommit(kck, s)...)
	b = append(b, mac(k.HeaderKey, []byte("imgfs v1 slot mac"), b)...)
	return b, nil
}

// unwrapSlot derives the passphrase key and returns MK. The commitment is checked with
// hmac.Equal before the AEAD is touched, so a crafted slot cannot act as a partitioning
// oracle (docs/security-tests.md T23).
func unwrapSlot(s *slot, pass []byte) (Secret, error) {
	a := argon2Key(pass, s.salt, s.params)
	defer clear(a)
	kek, kck := a[:32], a[32:]
	if !hmac.Equal(slotCommit(kck, s), s.commit) {
		return nil, errDamaged
	}
	mk, err := slotAEAD(kek).Open(nil, s.nonce, s.wrapped, slotAAD(s.vid, s.mode, s.raw[28:37]))
	if err != nil || len(mk) != keyLen {
		return nil, errDamaged
	}
	return mk, nil
}

// slotMACOK: the slot was written by a holder of MK (RemoveSlot counts only those).
func slotMACOK(s *slot, k *Keys) bool {
	return hmac.Equal(mac(k.HeaderKey, []byte("imgfs v1 slot mac"), s.raw[:164]), s.mac)
}

type storedSlot struct {
	name string
	s    *slot
}

// readSlots returns the well-formed slots of vault h whose bytes match their names.
func readSlots(ctx context.Context, store backend.Store, h *header) ([]storedSlot, error) {
	var names []string
	err := store.List(ctx, SlotPrefix, func(i backend.Info) error {
		if _, err := ParseSlotName(i.Name); err == nil && i.Size == slotSize {
			names = append(names, i.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("keyring: listing key slots: %w", err)
	}
	var out []storedSlot
	for _, name := range names {
		b, err := backend.ReadSmall(ctx, store, name, slotSize)
		if errors.Is(err, backend.ErrNotExist) || errors.Is(err, backend.ErrTooLarge) {
			continue // removed concurrently, or not a slot
		}
		if err != nil {
			return nil, fmt.Errorf("keyring: reading key slot: %w", err)
		}
		if SlotName(b) != name {
			continue
		}
		s, err := parseSlot(b)
		if err != nil || s.vid != h.vid || s.mode != h.raw[9] {
			continue
		}
		out = append(out, storedSlot{name, s})
		if len(out) == maxSlots {
			break
		}
	}
	return out, nil
}

// unlockWith tries every slot with pass; it returns the keys and the names of matching slots.
func unlockWith(h *header, slots []storedSlot, pass []byte) (*Keys, []string) {
	var keys *Keys
	var matched []string
	for _, ss := range slots {
		mk, err := unwrapSlot(ss.s, pass)
		if err != nil {
			continue
		}
		k := deriveKeys(mk, h.vid, h.mode)
		if !slotMACOK(ss.s, k) {
			continue
		}
		if keys == nil {
			cs, err := openHeader(h, k)
			if err != nil {
				continue
			}
			k.ConvergenceSecret = cs
			k.Generation = h.gen
			keys = k
		} else if !hmac.Equal(k.MasterKey, keys.MasterKey) {
			continue
		}
		matched = append(matched, ss.name)
	}
	return keys, matched
}

// Exists reports whether the store holds a vault header (of any generation).
func Exists(ctx context.Context, store backend.Store) (bool, error) {
	all, err := listHeaders(ctx, store)
	if err != nil {
		return false, err
	}
	return len(all) > 0, nil
}

// Create writes a new vault header and one key slot to the store. Fails if a vault exists.
// The slot is written first, so a crash never leaves a header without a slot.
func Create(ctx context.Context, store backend.Store, passphrase []byte, opts CreateOptions) (*Keys, error) {
	if opts.Mode == "" {
		opts.Mode = ModeVault
	}
	if _, ok := modeBytes[opts.Mode]; !ok {
		return nil, fmt.Errorf("keyring: unknown mode %q (vault, group or global)", opts.Mode)
	}
	if opts.KDF == (KDFParams{}) {
		opts.KDF = DefaultKDF
	}
	if err := opts.KDF.check(); err != nil {
		return nil, err
	}
	if ok, err := Exists(ctx, store); err != nil {
		return nil, err
	} else if ok {
		return nil, ErrVaultExists
	}
	mk, err := randBytes(keyLen)
	if err != nil {
		return nil, err
	}
	vid, err := randBytes(vidLen)
	if err != nil {
		return nil, err
	}
	k := deriveKeys(mk, [vidLen]byte(vid), opts.Mode)
	switch opts.Mode {
	case ModeVault:
		if k.ConvergenceSecret, err = randBytes(keyLen); err != nil {
			return nil, err
		}
	case ModeGroup:
		if len(opts.ConvergenceSecret) != keyLen {
			return nil, errors.New("keyring: group mode needs a 32-byte convergence secret")
		}
		k.ConvergenceSecret = bytes.Clone(opts.ConvergenceSecret)
	case ModeGlobal:
		k.ConvergenceSecret = GlobalConvergenceSecret()
	}
	hdr, err := buildHeader(k)
	if err != nil {
		return nil, err
	}
	sl, err := buildSlot(k, passphrase, opts.KDF)
	if err != nil {
		return nil, err
	}
	slotName := SlotName(sl)
	if err := store.Put(ctx, slotName, bytes.NewReader(sl), int64(len(sl))); err != nil {
		return nil, fmt.Errorf("keyring: writing key slot: %w", err)
	}
	if err := store.Put(ctx, HeaderName, bytes.NewReader(hdr), int64(len(hdr))); err != nil {
		_ = store.Delete(ctx, slotName) // our slot is useless without our header
		if errors.Is(err, backend.ErrExist) {
			return nil, ErrVaultExists
		}
		return nil, fmt.Errorf("keyring: writing vault header: %w", err)
	}
	return k, nil
}

// Unlock reads the current header generation and the slots and returns the keys, or
// ErrWrongPassphrase / ErrNoVault. Store errors are returned as such (wrapped), so a
// network failure is not reported as a wrong passphrase. Callers that keep local state
// check Keys.Generation against the highest generation they have seen (CheckGeneration).
func Unlock(ctx context.Context, store backend.Store, passphrase []byte) (*Keys, error) {
	set, err := readHeaders(ctx, store)
	if err != nil {
		return nil, err
	}
	return unlockHeader(ctx, store, set.current, passphrase)
}

// AddSlot stores a new passphrase slot for the unlocked vault (zero params = DefaultKDF).
func AddSlot(ctx context.Context, store backend.Store, keys *Keys, newPass []byte, params KDFParams) error {
	if params == (KDFParams{}) {
		params = DefaultKDF
	}
	if _, ok := modeBytes[keys.Mode]; !ok || len(keys.MasterKey) != keyLen || len(keys.HeaderKey) != keyLen {
		return errors.New("keyring: AddSlot needs unlocked keys")
	}
	sl, err := buildSlot(keys, newPass, params)
	if err != nil {
		return err
	}
	if err := store.Put(ctx, SlotName(sl), bytes.NewReader(sl), int64(len(sl))); err != nil {
		return fmt.Errorf("keyring: writing key slot: %w", err)
	}
	return nil
}

// RemoveSlot deletes every slot of this vault that passToRemove opens. It refuses
// (ErrLastSlot) unless at least one other slot written by this vault's key remains, and
// returns ErrWrongPassphrase when no slot matches.
func RemoveSlot(ctx context.Context, store backend.Store, keys *Keys, passToRemove []byte) error {
	set, err := readHeaders(ctx, store)
	if err != nil {
		return err
	}
	h := set.current
	if h.vid != keys.VaultID {
		return errors.New("keyring: keys belong to another vault")
	}
	slots, err := readSlots(ctx, store, h)
	if err != nil {
		return err
	}
	var matched []string
	for _, ss := range slots {
		mk, err := unwrapSlot(ss.s, passToRemove)
		if err == nil && hmac.Equal(mk, keys.MasterKey) && slotMACOK(ss.s, keys) {
			matched = append(matched, ss.name)
		}
	}
	if len(matched) == 0 {
		return ErrWrongPassphrase
	}
	others := 0
	for _, ss := range slots {
		if slotMACOK(ss.s, keys) && !contains(matched, ss.name) {
			others++
		}
	}
	if others == 0 {
		return ErrLastSlot
	}
	for _, name := range matched {
		if err := store.Delete(ctx, name); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return fmt.Errorf("keyring: removing key slot: %w", err)
		}
	}
	return nil
}

// ErrConflict: another client changed the passphrase at the same time (the old passphrase
// no longer opens any slot); this client's new passphrase was withdrawn again.
var ErrConflict = errors.New("the passphrase was changed concurrently by another client; nothing changed here, unlock with the new passphrase and retry")

// ChangePassphrase adds a slot for newPass, then removes the slots oldPass opens. The
// header is never rewritten, and the vault is never left without a slot: the new slot is
// stored before any old one is deleted. If the old passphrase opens no slot any more
// (another client changed it meanwhile), the new slot is removed again and ErrConflict
// returned.
func ChangePassphrase(ctx context.Context, store backend.Store, keys *Keys, oldPass, newPass []byte, params KDFParams) error {
	if bytes.Equal(oldPass, newPass) {
		return errors.New("keyring: the new passphrase equals the old one")
	}
	if err := AddSlot(ctx, store, keys, newPass, params); err != nil {
		return err
	}
	err := RemoveSlot(ctx, store, keys, oldPass)
	if errors.Is(err, ErrWrongPassphrase) {
		switch rerr := RemoveSlot(ctx, store, keys, newPass); {
		case errors.Is(rerr, ErrLastSlot):
			return nil // no other slot is left: the new passphrase is the vault's passphrase
		case rerr != nil:
			return fmt.Errorf("%w (and withdrawing the new passphrase failed: %v)", ErrConflict, rerr)
		}
		return ErrConflict
	}
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
