package keyring

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/imgfs/imgfs/dedup/internal/memstore"
	"github.com/imgfs/imgfs/dedup/leakscan"
)

// cheapKDF replaces Argon2id by HKDF (params included) for tests that unlock hundreds of
// times; the logic around the KDF is unchanged. It counts calls.
func cheapKDF(t testing.TB) *atomic.Int64 {
	var calls atomic.Int64
	old := argon2Key
	argon2Key = func(pass, salt []byte, p KDFParams) []byte {
		calls.Add(1)
		k, err := hkdf.Key(sha256.New, pass, salt, fmt.Sprintf("test kdf %d %d %d", p.Time, p.MemoryKiB, p.Threads), 64)
		if err != nil {
			panic(err)
		}
		return k
	}
	t.Cleanup(func() { argon2Key = old })
	return &calls
}

// spyAEAD counts Open calls of the slot AEAD (T23).
type spyAEAD struct {
	cipher.AEAD
	opens *atomic.Int64
}

func (s spyAEAD) Open(dst, nonce, ct, aad []byte) ([]byte, error) {
	s.opens.Add(1)
	return s.AEAD.Open(dst, nonce, ct, aad)
}

func spySlotAEAD(t testing.TB) *atomic.Int64 {
	var opens atomic.Int64
	old := slotAEAD
	slotAEAD = func(key []byte) cipher.AEAD { return spyAEAD{gcm(key), &opens} }
	t.Cleanup(func() { slotAEAD = old })
	return &opens
}

func slotNames(t *testing.T, st *memstore.Store) []string { return st.Names(SlotPrefix) }

func newVault(t *testing.T, pass string) (*memstore.Store, *Keys) {
	t.Helper()
	st := memstore.New()
	k, err := Create(ctx, st, []byte(pass), CreateOptions{KDF: MinKDF})
	if err != nil {
		t.Fatal(err)
	}
	return st, k
}

// TestWrongPassphraseReal is T21 with the real Argon2id (MinKDF): one generic error, no
// keys, and exactly one KDF evaluation per slot.
func TestWrongPassphraseReal(t *testing.T) {
	st, _ := newVault(t, "correct horse battery")
	var calls atomic.Int64
	old := argon2Key
	argon2Key = func(pass, salt []byte, p KDFParams) []byte { calls.Add(1); return old(pass, salt, p) }
	t.Cleanup(func() { argon2Key = old })
	k, err := Unlock(ctx, st, []byte("correct horse battery!"))
	if k != nil || err != ErrWrongPassphrase || err.Error() != "wrong passphrase or damaged vault header" {
		t.Fatalf("wrong passphrase: keys=%v err=%v", k != nil, err)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d Argon2id calls for one slot", calls.Load())
	}
}

// TestTamperedHeaderAndSlot is T22 (and T12 for the header): every byte of the slot and of
// the header flipped (the slot re-stored under its new hash name, as a malicious store
// would) gives exactly ErrWrongPassphrase, never keys and never another message.
func TestTamperedHeaderAndSlot(t *testing.T) {
	cheapKDF(t)
	st, keys := newVault(t, "pw")
	slotName := slotNames(t, st)[0]
	slot := st.Raw(slotName)
	hdr := st.Raw(HeaderName)
	check := func(what string) {
		t.Helper()
		k, err := Unlock(ctx, st, []byte("pw"))
		if k != nil || err != ErrWrongPassphrase {
			t.Fatalf("%s: keys=%v err=%v", what, k != nil, err)
		}
	}
	for i := range slot {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(slot)
			bad[i] ^= bit
			st.Delete(ctx, slotName)
			st.SetRaw(SlotName(bad), bad)
			check(fmt.Sprintf("slot byte %d", i))
			st.Delete(ctx, SlotName(bad))
			st.SetRaw(slotName, bad) // under the old name too (hash mismatch)
			check(fmt.Sprintf("slot byte %d, old name", i))
		}
	}
	st.SetRaw(slotName, slot)
	for i := range hdr {
		bad := bytes.Clone(hdr)
		bad[i] ^= 0x04
		st.SetRaw(HeaderName, bad)
		check(fmt.Sprintf("header byte %d", i))
	}
	for _, n := range []int{0, 1, headerSize - 1, headerSize + 1} {
		st.SetRaw(HeaderName, append(bytes.Clone(hdr), 0)[:n])
		check(fmt.Sprintf("header of %d bytes", n))
	}
	st.SetRaw(HeaderName, hdr)
	if k, err := Unlock(ctx, st, []byte("pw")); err != nil || !bytes.Equal(k.MasterKey, keys.MasterKey) {
		t.Fatalf("restored vault: %v", err)
	}
	// A slot copied from another vault (T14e).
	other, _ := newVault(t, "pw")
	os := other.Raw(slotNames(t, other)[0])
	st.Delete(ctx, slotName)
	st.SetRaw(SlotName(os), os)
	check("slot of another vault")
}

// TestKDFFloor (T22): parameters below the floor are refused when a slot is created, and a
// stored slot that declares them is not even tried.
func TestKDFFloor(t *testing.T) {
	calls := cheapKDF(t)
	for _, p := range []KDFParams{{Time: 2, MemoryKiB: 1 << 20, Threads: 4}, {Time: 3, MemoryKiB: 32 << 10, Threads: 4},
		{Time: 3, MemoryKiB: 64 << 10, Threads: 0}, {Time: 65, MemoryKiB: 64 << 10, Threads: 1}} {
		if _, err := Create(ctx, memstore.New(), []byte("pw"), CreateOptions{KDF: p}); err == nil {
			t.Fatalf("Create accepted %+v", p)
		}
	}
	st, keys := newVault(t, "pw")
	if err := AddSlot(ctx, st, keys, []byte("pw2"), KDFParams{Time: 1, MemoryKiB: 64 << 10, Threads: 1}); err == nil {
		t.Fatal("AddSlot accepted t=1")
	}
	// Forge a slot with t=1 (as the store could): it must be skipped without a KDF call.
	k := *keys
	p := KDFParams{Time: 1, MemoryKiB: 64 << 10, Threads: 1}
	old := MinKDF
	MinKDF = p
	weak, err := buildSlot(&k, []byte("weak"), p)
	MinKDF = old
	if err != nil {
		t.Fatal(err)
	}
	st.SetRaw(SlotName(weak), weak)
	calls.Store(0)
	if _, err := Unlock(ctx, st, []byte("weak")); err != ErrWrongPassphrase {
		t.Fatalf("weak slot: %v", err)
	}
	if calls.Load() != 1 { // only the genuine slot was tried
		t.Fatalf("%d KDF calls; the weak slot must not be tried", calls.Load())
	}
}

// TestCommitBeforeDecrypt is T23: with a spy AEAD, Open is never called when the
// commitment does not match (wrong passphrase, tampered commit, tampered wrapped key),
// and is called once for the right passphrase.
func TestCommitBeforeDecrypt(t *testing.T) {
	cheapKDF(t)
	st, _ := newVault(t, "pw")
	opens := spySlotAEAD(t)
	name := slotNames(t, st)[0]
	slot := st.Raw(name)
	s, err := parseSlot(slot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unwrapSlot(s, []byte("wrong")); err == nil || opens.Load() != 0 {
		t.Fatalf("wrong passphrase: err=%v, %d Open calls", err, opens.Load())
	}
	for _, at := range []int{84, 100, 131, 132, 163} { // wrapped key and commit bytes
		bad := bytes.Clone(slot)
		bad[at] ^= 1
		bs, err := parseSlot(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := unwrapSlot(bs, []byte("pw")); err == nil || opens.Load() != 0 {
			t.Fatalf("byte %d: err=%v, %d Open calls", at, err, opens.Load())
		}
	}
	// A wrapped key modified with the commitment recomputed (only possible with KCK):
	// the commitment passes, the AEAD rejects.
	a := argon2Key([]byte("pw"), s.salt, s.params)
	bad := bytes.Clone(slot)
	bad[90] ^= 1
	bs, _ := parseSlot(bad)
	copy(bad[132:164], slotCommit(a[32:], bs))
	if _, err := unwrapSlot(bs, []byte("pw")); err == nil || opens.Load() != 1 {
		t.Fatalf("recommitted tampered wrap: err=%v, %d Open calls", err, opens.Load())
	}
	if _, err := unwrapSlot(s, []byte("pw")); err != nil || opens.Load() != 2 {
		t.Fatalf("right passphrase: err=%v, %d Open calls", err, opens.Load())
	}
}

// TestChangePassphrase is T24: after a change the old passphrase fails, the new one gives
// the same keys, exactly one slot is left and the header is untouched (this format never
// rewrites it, see docs/format.md).
func TestChangePassphrase(t *testing.T) {
	cheapKDF(t)
	st, keys := newVault(t, "old pass")
	hdr := bytes.Clone(st.Raw(HeaderName))
	if err := ChangePassphrase(ctx, st, keys, []byte("old pass"), []byte("new pass"), MinKDF); err != nil {
		t.Fatal(err)
	}
	if _, err := Unlock(ctx, st, []byte("old pass")); err != ErrWrongPassphrase {
		t.Fatalf("old passphrase after change: %v", err)
	}
	k, err := Unlock(ctx, st, []byte("new pass"))
	if err != nil || !bytes.Equal(k.MasterKey, keys.MasterKey) || !bytes.Equal(k.ConvergenceSecret, keys.ConvergenceSecret) || !bytes.Equal(k.MetaKey, keys.MetaKey) {
		t.Fatalf("new passphrase: %v", err)
	}
	if n := len(slotNames(t, st)); n != 1 {
		t.Fatalf("%d slots after change, want 1", n)
	}
	if !bytes.Equal(st.Raw(HeaderName), hdr) {
		t.Fatal("header rewritten")
	}
	if err := RemoveSlot(ctx, st, k, []byte("new pass")); !errors.Is(err, ErrLastSlot) {
		t.Fatalf("removing the last slot: %v", err)
	}
	if err := ChangePassphrase(ctx, st, k, []byte("new pass"), []byte("new pass"), MinKDF); err == nil {
		t.Fatal("change to the same passphrase accepted")
	}
}

// TestConcurrentChangePassphrase (T24): two clients change the passphrase at once. Never
// zero slots; every change that returned nil left a working passphrase; a loser gets
// ErrConflict and its passphrase does not work; the old passphrase fails.
func TestConcurrentChangePassphrase(t *testing.T) {
	cheapKDF(t)
	for round := range 20 {
		st, keys := newVault(t, "old")
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for c := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[c] = ChangePassphrase(ctx, st, keys, []byte("old"), []byte(fmt.Sprintf("new%d", c)), MinKDF)
			}()
		}
		wg.Wait()
		ok := 0
		for c, err := range errs {
			_, uerr := Unlock(ctx, st, []byte(fmt.Sprintf("new%d", c)))
			switch {
			case err == nil:
				ok++
				if uerr != nil {
					t.Fatalf("round %d: client %d succeeded but its passphrase fails: %v", round, c, uerr)
				}
			case errors.Is(err, ErrConflict):
				if uerr == nil {
					t.Fatalf("round %d: client %d got a conflict but its passphrase works", round, c)
				}
			default:
				t.Fatalf("round %d: client %d: %v", round, c, err)
			}
		}
		if ok == 0 || len(slotNames(t, st)) != ok {
			t.Fatalf("round %d: %d successful changes, %d slots", round, ok, len(slotNames(t, st)))
		}
		if _, err := Unlock(ctx, st, []byte("old")); err != ErrWrongPassphrase {
			t.Fatalf("round %d: old passphrase: %v", round, err)
		}
	}
}

// TestSecretsRedacted is T10's unit part: every fmt verb, JSON, slog and errors print no key.
func TestSecretsRedacted(t *testing.T) {
	cheapKDF(t)
	st, keys := newVault(t, "hunter2 passphrase")
	secrets := []Secret{keys.MasterKey, keys.ConvergenceSecret, keys.MetaKey, keys.HeaderKey, keys.LocalKey}
	var out []string
	for _, v := range []any{keys, *keys, keys.MasterKey, struct{ K Secret }{keys.MetaKey}, []Secret{keys.LocalKey}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			out = append(out, fmt.Sprintf(verb, v))
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(j))
		var b strings.Builder
		slog.New(slog.NewTextHandler(&b, nil)).Info("k", "v", v)
		slog.New(slog.NewJSONHandler(&b, nil)).Info("k", "v", v)
		out = append(out, b.String())
	}
	for _, s := range out[:8] {
		if !strings.Contains(s, "[redacted]") {
			t.Errorf("no [redacted] in %q", s)
		}
	}
	// Errors from every failing path.
	_, e1 := Unlock(ctx, st, []byte("wrong"))
	e2 := ChangePassphrase(ctx, st, keys, []byte("wrong"), []byte("x"), MinKDF)
	e3 := RemoveSlot(ctx, st, keys, []byte("hunter2 passphrase"))
	for _, e := range []error{e1, e2, e3} {
		if e != nil {
			out = append(out, e.Error(), fmt.Sprintf("%+v", e))
		}
	}
	all := strings.Join(out, "\n")
	for i, s := range append(secrets, Secret("hunter2 passphrase")) {
		for _, form := range []string{string(s), hex.EncodeToString(s), strings.ToUpper(hex.EncodeToString(s)),
			base64.StdEncoding.EncodeToString(s), base64.RawURLEncoding.EncodeToString(s), base32.StdEncoding.EncodeToString(s),
			fmt.Sprint([]byte(s)), fmt.Sprintf("%#v", []byte(s))} {
			if strings.Contains(all, form) {
				t.Fatalf("secret %d printed in form %q", i, form[:min(len(form), 12)])
			}
		}
	}
}

// TestStoreHoldsNoKeys is T1/T10 for the header and slots: no key, the convergence secret
// or the passphrase appears in any form in any stored byte or object name (positive
// control: a planted hex copy of MK is found).
func TestStoreHoldsNoKeys(t *testing.T) {
	cheapKDF(t)
	for _, mode := range []string{ModeVault, ModeGroup} {
		st := memstore.New()
		pass := []byte("correct horse battery staple")
		k, err := Create(ctx, st, pass, CreateOptions{Mode: mode, KDF: MinKDF, ConvergenceSecret: bytes.Repeat([]byte{0x5c, 0x17}, 16)})
		if err != nil {
			t.Fatal(err)
		}
		if err := AddSlot(ctx, st, k, []byte("second passphrase 2"), MinKDF); err != nil {
			t.Fatal(err)
		}
		s := leakscan.New()
		s.AddSecret("MK", k.MasterKey)
		s.AddSecret("CS", k.ConvergenceSecret)
		s.AddSecret("K_meta", k.MetaKey)
		s.AddSecret("K_hdr", k.HeaderKey)
		s.AddSecret("K_local", k.LocalKey)
		s.AddPlaintext("passphrase", pass)
		s.AddName("correct horse")
		scan := func() []leakscan.Hit {
			var hits []leakscan.Hit
			for _, name := range st.Names("") {
				hits = append(hits, s.ScanName(name)...)
				hits = append(hits, s.ScanBytes(name, st.Raw(name))...)
			}
			return hits
		}
		if h := scan(); len(h) != 0 {
			t.Fatalf("%s: keys in the store: %s", mode, leakscan.Format(h))
		}
		st.SetRaw("planted", []byte(hex.EncodeToString(k.MasterKey)))
		if h := scan(); len(h) == 0 {
			t.Fatalf("%s: positive control not found", mode)
		}
	}
}
