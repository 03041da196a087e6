package keyring

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/imgfs/imgfs/backend"
)

// Header generations (docs/format.md §3.1). `imgfs rekey` replaces the master key and the
// convergence secret; the header that holds them is replaced by a new generation, a
// create-only object "h/" + 20 decimal digits. The original header "vault" is generation 0.
//
// Header object "h/<gen>" (204 bytes, gen ≥ 1):
//
//	0   8  magic "IMGFSVLT"
//	8   1  format version (2)
//	9   1  mode (equal to every other generation's)
//	10  6  zero
//	16  16 VID (equal to every other generation's)
//	32  8  u64be generation (equal to the number in the object's name)
//	40  32 prev: SHA-256 of the header object this one replaces
//	72  8  u64be switch root sequence number s (0: a reservation, see below)
//	80  32 switch root hash: SHA-256 of the root object r/<s> written under this generation's
//	       keys (zero in a reservation)
//	112 12 nonce
//	124 48 AES-256-GCM(K_cs, nonce, CS, AAD = "imgfs v2 header cs" || bytes[0:124])
//	172 32 HMAC(K_hdr, "imgfs v2 header mac" || bytes[0:172])
//
// A new generation is written before the first root under its keys (the switch root), so
// that root's hash can be bound into it. Until r/<s> exists with that hash the generation is
// only staged: readers keep using the previous one, whose keys still open every root, so
// the vault is readable at every point of a rekey. A rekey first writes a reservation
// (switch root 0, never current) so that a rerun after a crash finds the same new keys
// (Staged) and what it already re-encrypted under them. Once the rekey finishes, every older
// header is deleted, and the remaining one is current whatever happens to r/<s> later (gc
// collects old roots).
const (
	// GenerationPrefix holds the header objects of generations ≥ 1.
	GenerationPrefix = "h/"

	formatVersion2 = 2
	headerV2Size   = 204
	// maxGenerations bounds the header objects Unlock reads (a rekey leaves at most a few).
	maxGenerations = 64
	// maxSwitchRoot bounds the switch root read to check its hash (roots are small).
	maxSwitchRoot = 64 << 20
)

// ErrHeaderRollback: the store serves an older header generation than this device has seen.
var ErrHeaderRollback = errors.New("vault header rollback detected")

// ErrRekeyConflict: another client wrote a header generation at the same time.
var ErrRekeyConflict = errors.New("another client is rekeying this vault at the same time")

// GenerationName is the store key of header generation gen ≥ 1.
func GenerationName(gen uint64) string { return fmt.Sprintf("%s%020d", GenerationPrefix, gen) }

// ParseGenerationName is the inverse of GenerationName; only the canonical form, gen ≥ 1.
func ParseGenerationName(name string) (uint64, error) {
	bad := errors.New("keyring: not a header generation name")
	if len(name) != len(GenerationPrefix)+20 || name[:len(GenerationPrefix)] != GenerationPrefix {
		return 0, bad
	}
	for _, c := range []byte(name[len(GenerationPrefix):]) {
		if c < '0' || c > '9' {
			return 0, bad
		}
	}
	g, err := strconv.ParseUint(name[len(GenerationPrefix):], 10, 64)
	if err != nil || g == 0 {
		return 0, bad
	}
	return g, nil
}

// rootName mirrors dedup.RootName (dedup imports this package, not the other way round).
func rootName(seq uint64) string { return fmt.Sprintf("r/%020d", seq) }

// CheckGeneration is the header's rollback check (docs/format.md §3.1): a device that has
// seen generation seen refuses a store that now serves an older one.
func CheckGeneration(seen, served uint64) error {
	if served < seen {
		return fmt.Errorf("%w: the store serves key generation %d, this device has seen generation %d (restored from an old copy, or tampered with)", ErrHeaderRollback, served, seen)
	}
	return nil
}

func parseHeaderV2(b []byte) (*header, error) {
	if len(b) != headerV2Size || [8]byte(b[0:8]) != headerMagic || b[8] != formatVersion2 || !zero(b[10:16]) {
		return nil, errDamaged
	}
	mode, ok := modeName(b[9])
	if !ok {
		return nil, errDamaged
	}
	h := &header{raw: b, mode: mode, vid: [vidLen]byte(b[16:32]), gen: binary.BigEndian.Uint64(b[32:40]),
		prev: [32]byte(b[40:72]), switchSeq: binary.BigEndian.Uint64(b[72:80]), switchHash: [32]byte(b[80:112]),
		nonce: b[112:124], encCS: b[124:172], mac: b[172:204]}
	if h.gen == 0 || (h.switchSeq == 0 && h.switchHash != [32]byte{}) {
		return nil, errDamaged
	}
	return h, nil
}

// buildHeaderV2 encodes generation gen of k's vault.
func buildHeaderV2(k *Keys, gen uint64, prev [32]byte, switchSeq uint64, switchHash [32]byte) ([]byte, error) {
	b := make([]byte, 0, headerV2Size)
	b = append(b, headerMagic[:]...)
	b = append(b, formatVersion2, modeBytes[k.Mode], 0, 0, 0, 0, 0, 0)
	b = append(b, k.VaultID[:]...)
	b = binary.BigEndian.AppendUint64(b, gen)
	b = append(b, prev[:]...)
	b = binary.BigEndian.AppendUint64(b, switchSeq)
	b = append(b, switchHash[:]...)
	nonce, err := randBytes(12)
	if err != nil {
		return nil, err
	}
	b = append(b, nonce...)
	b = gcm(csKey(k)).Seal(b, nonce, k.ConvergenceSecret, append([]byte("imgfs v2 header cs"), b[0:124]...))
	b = append(b, mac(k.HeaderKey, []byte("imgfs v2 header mac"), b)...)
	return b, nil
}

// storedHeader is one header object with its generation.
type storedHeader struct {
	gen  uint64
	name string
	h    *header // nil for a generation whose object vanished while reading
}

// listHeaders returns the header objects in the store, newest generation first.
func listHeaders(ctx context.Context, store backend.Store) ([]storedHeader, error) {
	var gens []uint64
	err := store.List(ctx, GenerationPrefix, func(i backend.Info) error {
		if g, err := ParseGenerationName(i.Name); err == nil {
			gens = append(gens, g)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("keyring: listing vault header generations: %w", err)
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] > gens[j] })
	if len(gens) > maxGenerations {
		gens = gens[:maxGenerations]
	}
	var out []storedHeader
	for _, g := range gens {
		out = append(out, storedHeader{gen: g, name: GenerationName(g)})
	}
	if _, err := store.Stat(ctx, HeaderName); err == nil {
		out = append(out, storedHeader{gen: 0, name: HeaderName})
	} else if !errors.Is(err, backend.ErrNotExist) {
		return nil, fmt.Errorf("keyring: reading vault header: %w", err)
	}
	return out, nil
}

// loadHeader reads and parses one header object (nil, nil: it vanished).
func loadHeader(ctx context.Context, store backend.Store, sh storedHeader) (*header, error) {
	b, err := backend.ReadSmall(ctx, store, sh.name, headerV2Size)
	if errors.Is(err, backend.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, backend.ErrTooLarge) {
		return nil, ErrWrongPassphrase // not a header of this size: as a malformed one
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: reading vault header: %w", err)
	}
	h, err := parseHeader(b)
	if err != nil || h.gen != sh.gen {
		return nil, ErrWrongPassphrase
	}
	return h, nil
}

// switched reports whether h's switch root is in the store with the hash h names. A
// reservation (switch root 0) never is.
func switched(ctx context.Context, store backend.Store, h *header) (bool, error) {
	if h.switchSeq == 0 {
		return false, nil
	}
	b, err := backend.ReadSmall(ctx, store, rootName(h.switchSeq), maxSwitchRoot)
	if errors.Is(err, backend.ErrNotExist) || errors.Is(err, backend.ErrTooLarge) {
		return false, nil // an oversized object is not the switch root
	}
	if err != nil {
		return false, fmt.Errorf("keyring: reading the switch root of key generation %d: %w", h.gen, err)
	}
	sum := sha256.Sum256(b)
	return hmac.Equal(sum[:], h.switchHash[:]), nil
}

// headerSet is what the store holds: the current header, and the staged generations above it.
type headerSet struct {
	current *header
	staged  []*header // newer than current, not current (newest first)
	older   []*header // left over below current by a rekey interrupted after its switch
	all     []storedHeader
}

// readHeaders finds the current generation: the newest header that is generation 0, or
// whose switch root is in place, or below which no header but reservations is left (the
// rekey that wrote it has finished, and gc may have collected its switch root since). Newer
// ones are staged (a rekey running or interrupted before its switch); older ones are left
// over from a rekey interrupted after its switch.
func readHeaders(ctx context.Context, store backend.Store) (*headerSet, error) {
	all, err := listHeaders(ctx, store)
	if err != nil {
		return nil, err
	}
	set := &headerSet{all: all}
	var hs []*header // newest first
	for _, sh := range all {
		h, err := loadHeader(ctx, store, sh)
		if err != nil {
			return nil, err
		}
		if h == nil {
			continue // deleted meanwhile (a rekey finishing)
		}
		if len(hs) > 0 && h.vid != hs[0].vid {
			return nil, ErrWrongPassphrase // generations of two vaults: not ours to choose
		}
		hs = append(hs, h)
	}
	for i, h := range hs {
		ok := h.gen == 0 || onlyReservations(hs[i+1:])
		if !ok {
			if ok, err = switched(ctx, store, h); err != nil {
				return nil, err
			}
		}
		if ok {
			set.current, set.staged, set.older = h, hs[:i], hs[i+1:]
			return set, nil
		}
	}
	return nil, ErrNoVault
}

// onlyReservations: every header in hs is a reservation (generation 0 is not).
func onlyReservations(hs []*header) bool {
	for _, h := range hs {
		if h.gen == 0 || h.switchSeq != 0 {
			return false
		}
	}
	return true
}

// unlockHeader unlocks h with pass through the slots in the store.
func unlockHeader(ctx context.Context, store backend.Store, h *header, pass []byte) (*Keys, error) {
	slots, err := readSlots(ctx, store, h)
	if err != nil {
		return nil, err
	}
	for _, ss := range slots {
		if k, _ := unlockWith(h, []storedSlot{ss}, pass); k != nil {
			return k, nil
		}
	}
	return nil, ErrWrongPassphrase
}

// Staged returns the keys of the newest staged header generation that pass opens (a rekey
// that has not switched yet), or nil when there is none. `imgfs rekey` resumes with them,
// so content already re-encrypted under their convergence secret is found again.
func Staged(ctx context.Context, store backend.Store, pass []byte) (*Keys, error) {
	set, err := readHeaders(ctx, store)
	if err != nil {
		return nil, err
	}
	for _, h := range set.staged {
		k, err := unlockHeader(ctx, store, h, pass)
		if errors.Is(err, ErrWrongPassphrase) {
			continue
		}
		return k, err
	}
	return nil, nil
}

// Leftovers reports how many header objects other than the current one the store holds
// (a rekey that has not finished: staged generations, or old ones after the switch).
func Leftovers(ctx context.Context, store backend.Store) (staged, older int, err error) {
	set, err := readHeaders(ctx, store)
	if err != nil {
		return 0, 0, err
	}
	return len(set.staged), len(set.older), nil
}

// NewGeneration returns fresh keys for the next generation of cur's vault: a new master
// key and, in mode vault, a new convergence secret (group and global modes keep theirs:
// it is shared with other vaults or public). Generation is set by WriteGeneration.
func NewGeneration(cur *Keys) (*Keys, error) {
	if _, ok := modeBytes[cur.Mode]; !ok || len(cur.ConvergenceSecret) != keyLen {
		return nil, errors.New("keyring: NewGeneration needs unlocked keys")
	}
	mk, err := randBytes(keyLen)
	if err != nil {
		return nil, err
	}
	k := deriveKeys(mk, cur.VaultID, cur.Mode)
	if cur.Mode == ModeVault {
		if k.ConvergenceSecret, err = randBytes(keyLen); err != nil {
			return nil, err
		}
	} else {
		k.ConvergenceSecret = bytes.Clone(cur.ConvergenceSecret)
	}
	return k, nil
}

// WriteGeneration stages next as a new header generation whose switch root is r/<seq> with
// the given hash (seq 0 and a zero hash: a reservation that only keeps the keys): it stores a key slot for pass under next's master key (unless one is
// there), then the header, with a create-only Put at the next free generation number. It
// sets next.Generation. The generation becomes current when the caller stores the root.
func WriteGeneration(ctx context.Context, store backend.Store, cur, next *Keys, pass []byte, kdf KDFParams, seq uint64, rootHash [32]byte) error {
	set, err := readHeaders(ctx, store)
	if err != nil {
		return err
	}
	if set.current.vid != cur.VaultID || set.current.gen != cur.Generation || next.VaultID != cur.VaultID || next.Mode != cur.Mode {
		return errors.New("keyring: the keys are not those of this vault's current header generation (reopen and retry)")
	}
	slots, err := readSlots(ctx, store, set.current)
	if err != nil {
		return err
	}
	have := false
	for _, ss := range slots {
		have = have || slotMACOK(ss.s, next)
	}
	if !have {
		if err := AddSlot(ctx, store, next, pass, kdf); err != nil {
			return err
		}
	}
	gen := set.all[0].gen + 1
	prev := sha256.Sum256(set.current.raw)
	hdr, err := buildHeaderV2(next, gen, prev, seq, rootHash)
	if err != nil {
		return err
	}
	if err := store.Put(ctx, GenerationName(gen), bytes.NewReader(hdr), int64(len(hdr))); err != nil {
		if errors.Is(err, backend.ErrExist) {
			return ErrRekeyConflict
		}
		return fmt.Errorf("keyring: writing vault header generation %d: %w", gen, err)
	}
	next.Generation = gen
	return nil
}

// FinishGeneration removes what the previous generations left once k's generation is
// current: every other header object and every key slot not written under k's master key
// (the old passphrases: each opens the old master key). It returns how many slots it
// removed. k must be the current generation's keys.
func FinishGeneration(ctx context.Context, store backend.Store, k *Keys) (slotsRemoved int, err error) {
	set, err := readHeaders(ctx, store)
	if err != nil {
		return 0, err
	}
	if set.current.gen != k.Generation || set.current.vid != k.VaultID {
		return 0, fmt.Errorf("keyring: key generation %d is not the vault's current one (%d)", k.Generation, set.current.gen)
	}
	if _, err := openHeader(set.current, k); err != nil {
		return 0, ErrWrongPassphrase
	}
	var names []string
	err = store.List(ctx, SlotPrefix, func(i backend.Info) error {
		names = append(names, i.Name)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("keyring: listing key slots: %w", err)
	}
	keep := 0
	var drop []string
	for _, name := range names {
		b, err := backend.ReadSmall(ctx, store, name, slotSize)
		if err != nil && !errors.Is(err, backend.ErrNotExist) && !errors.Is(err, backend.ErrTooLarge) {
			return 0, fmt.Errorf("keyring: reading key slot: %w", err)
		}
		if s, perr := parseSlot(b); err == nil && perr == nil && SlotName(b) == name && slotMACOK(s, k) {
			keep++
			continue
		}
		drop = append(drop, name)
	}
	if keep == 0 {
		return 0, ErrLastSlot
	}
	// Old headers go first: after that the current one no longer depends on its switch root.
	for _, sh := range set.all {
		if sh.gen != set.current.gen {
			if err := store.Delete(ctx, sh.name); err != nil && !errors.Is(err, backend.ErrNotExist) {
				return 0, fmt.Errorf("keyring: removing an old vault header: %w", err)
			}
		}
	}
	for _, name := range drop {
		if err := store.Delete(ctx, name); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return slotsRemoved, fmt.Errorf("keyring: removing an old key slot: %w", err)
		}
		slotsRemoved++
	}
	return slotsRemoved, nil
}

// CurrentGeneration returns the number of the current header generation without a key
// (its MAC is not checked: a mount uses it only to notice a rekey by another device).
func CurrentGeneration(ctx context.Context, store backend.Store) (uint64, error) {
	set, err := readHeaders(ctx, store)
	if err != nil {
		return 0, err
	}
	return set.current.gen, nil
}
