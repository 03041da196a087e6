package dedup

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/imgfs/imgfs/dedup/internal/memstore"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// vaultKeys creates a vault (MinKDF) in its own store.
func vaultKeys(t *testing.T, mode string, cs keyring.Secret) *keyring.Keys {
	t.Helper()
	k, err := keyring.Create(ctx, memstore.New(), []byte("pw"), keyring.CreateOptions{Mode: mode, ConvergenceSecret: cs, KDF: keyring.MinKDF})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// corpus returns a few real images and edge-size plaintexts.
func corpus(t *testing.T) map[string][]byte {
	c := testImages(t)
	for _, n := range []int{0, 1, 16, 1000, segSize + 1} {
		c[fmt.Sprintf("edge-%d", n)] = randBytes(uint64(n)+77, n)
	}
	return c
}

// TestVaultLinkability is T7: the same image in two vaults (vault mode) gives unrelated
// locators and object bytes; in group mode with one imported CS, and in global mode, it
// gives the same locator.
func TestVaultLinkability(t *testing.T) {
	group := keyring.Secret(randBytes(42, 32))
	a, b := vaultKeys(t, keyring.ModeVault, nil), vaultKeys(t, keyring.ModeVault, nil)
	g1, g2 := vaultKeys(t, keyring.ModeGroup, group), vaultKeys(t, keyring.ModeGroup, group)
	w1, w2 := vaultKeys(t, keyring.ModeGlobal, nil), vaultKeys(t, keyring.ModeGlobal, nil)
	for name, p := range corpus(t) {
		oa, ra := sealBytes(t, a.ConvergenceSecret, p)
		ob, rb := sealBytes(t, b.ConvergenceSecret, p)
		if ra.Locator == rb.Locator || bytes.Equal(oa[contentStart:], ob[contentStart:]) || hmac.Equal(ra.Key, rb.Key) {
			t.Fatalf("%s: two vaults produced linkable objects", name)
		}
		_, r1 := sealBytes(t, g1.ConvergenceSecret, p)
		_, r2 := sealBytes(t, g2.ConvergenceSecret, p)
		if r1.Locator != r2.Locator || r1.Locator == ra.Locator {
			t.Fatalf("%s: group mode: same CS must dedup across vaults, and differ from vault mode", name)
		}
		_, x1 := sealBytes(t, w1.ConvergenceSecret, p)
		_, x2 := sealBytes(t, w2.ConvergenceSecret, p)
		if x1.Locator != x2.Locator || x1.Locator == r1.Locator {
			t.Fatalf("%s: global mode must dedup across all vaults", name)
		}
	}
}

// attackerLocators computes the locators a store could try for plaintext p without the
// vault's CS (T8 in docs/security-tests.md), with the vault id that the header makes public.
func attackerLocators(t *testing.T, p []byte, vid [16]byte) map[string]Locator {
	out := map[string]Locator{}
	withKey := func(what string, kc []byte) {
		var buf bytes.Buffer
		ref, _, err := sealWithKey(kc, bytes.NewReader(p), int64(len(p)), &buf, make([]byte, segSize+tagSize))
		if err != nil {
			t.Fatal(err)
		}
		out[what] = ref.Locator
	}
	withCS := func(what string, cs []byte) {
		withKey(what, hmacSHA256(cs, []byte(contentDomain), p))
	}
	withCS("global CS", keyring.GlobalConvergenceSecret())
	withCS("empty key", nil)
	withCS("all-zero key", make([]byte, 32))
	withCS("HMAC(VID, P)", vid[:])
	h := sha256.Sum256(p)
	withKey("K_c = SHA-256(P)", h[:])
	withKey("K_c = HMAC(VID, P)", hmacSHA256(vid[:], p))
	out["L = SHA-256(P)"] = h
	return out
}

// TestConfirmationAttack is T8: an attacker with the store snapshot (object names and
// bytes, vault header, so the vault id) and the plaintext corpus confirms no file in vault
// mode under any keyless guess; in global mode the guess "global CS" confirms every file
// (the documented opt-in risk).
func TestConfirmationAttack(t *testing.T) {
	for _, mode := range []string{keyring.ModeVault, keyring.ModeGlobal} {
		k := vaultKeys(t, mode, nil)
		st := memstore.New()
		c := corpus(t)
		for _, p := range c {
			obj, ref := sealBytes(t, k.ConvergenceSecret, p)
			if _, err := Upload(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj))); err != nil {
				t.Fatal(err)
			}
		}
		names := strings.Join(st.Names(""), "\n")
		matches := map[string]int{}
		for _, p := range c {
			for what, l := range attackerLocators(t, p, k.VaultID) {
				if st.Raw(ContentName(l)) != nil || strings.Contains(names, l.String()) {
					matches[what]++
				}
			}
			// The plaintext hash in any common form in any object name.
			h := sha256.Sum256(p)
			for _, form := range []string{hex.EncodeToString(h[:8]), base64.RawURLEncoding.EncodeToString(h[:8])} {
				if strings.Contains(names, form) {
					matches["SHA-256(P) in names"]++
				}
			}
		}
		switch mode {
		case keyring.ModeVault:
			if len(matches) != 0 {
				t.Fatalf("vault mode: attacker confirmed files: %v", matches)
			}
		case keyring.ModeGlobal:
			if matches["global CS"] != len(c) || len(matches) != 1 {
				t.Fatalf("global mode: want all %d files confirmed by the global CS only, got %v", len(c), matches)
			}
		}
	}
}

// TestExactDedup is T36 at this layer: the same image sealed and uploaded for 100 names is
// one content object (one Put); one changed byte is a second object.
func TestExactDedup(t *testing.T) {
	st := memstore.New()
	cs := testCS(6)
	p := testImages(t)["b.jpg"]
	var first Ref
	for i := range 100 {
		obj, ref := sealBytes(t, cs, p)
		stored, err := Upload(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj)))
		if err != nil || stored != (i == 0) {
			t.Fatalf("name %d: stored=%v err=%v", i, stored, err)
		}
		if i == 0 {
			first = ref
		} else if ref.Locator != first.Locator || !hmac.Equal(ref.Key, first.Key) || ref.Size != first.Size {
			t.Fatalf("name %d: another ref", i)
		}
	}
	if n := len(st.Names("c/")); n != 1 || st.Puts != 1 {
		t.Fatalf("%d content objects, %d puts for one image under 100 names", n, st.Puts)
	}
	q := bytes.Clone(p)
	q[len(q)-3] ^= 0x01
	obj, ref := sealBytes(t, cs, q)
	if stored, err := Upload(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj))); err != nil || !stored {
		t.Fatalf("changed byte: stored=%v err=%v", stored, err)
	}
	if n := len(st.Names("c/")); n != 2 {
		t.Fatalf("%d content objects after one changed byte, want 2", n)
	}
}

// TestMetaSizesArePadded is T3 for metadata and roots: object sizes depend only on the
// Padmé class of the plaintext length.
func TestMetaSizesArePadded(t *testing.T) {
	mk := testCS(7)
	sizes := map[int]bool{}
	for n := 100_000; n < 100_000+2000; n += 97 { // one 2 KiB class at 100 kB
		obj, _, err := SealMeta(mk, "tree", randBytes(uint64(n), n))
		if err != nil {
			t.Fatal(err)
		}
		sizes[len(obj)] = true
		r, _, err := SealRoot(mk, 3, randBytes(uint64(n), n))
		if err != nil {
			t.Fatal(err)
		}
		if len(r) != len(obj) {
			t.Fatalf("root and meta of %d bytes differ in size", n)
		}
	}
	if len(sizes) > 2 {
		t.Fatalf("%d metadata object sizes for lengths in one Padmé step", len(sizes))
	}
}

// TestRefRedactedAndErrorsKeyFree is T10 at this layer: a Ref (it holds K_c) prints
// [redacted] under every verb, JSON and slog, and no error of a failed open or seal carries
// key bytes or plaintext.
func TestRefRedactedAndErrorsKeyFree(t *testing.T) {
	cs := testCS(8)
	p := []byte("secret plaintext of a photo, 40 bytes..")
	obj, ref := sealBytes(t, cs, p)
	var out []string
	for _, v := range []any{ref, &ref, []Ref{ref}, map[string]Ref{"a": ref}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			s := fmt.Sprintf(verb, v)
			if !strings.Contains(s, "[redacted]") {
				t.Errorf("%s of %T: no [redacted] in %q", verb, v, s)
			}
			out = append(out, s)
		}
		j, err := json.Marshal(v)
		if err != nil || !strings.Contains(string(j), "[redacted]") {
			t.Errorf("json of %T: %s %v", v, j, err)
		}
		var b strings.Builder
		slog.New(slog.NewJSONHandler(&b, nil)).Info("ref", "ref", v)
		slog.New(slog.NewTextHandler(&b, nil)).Info("ref", "ref", v)
		out = append(out, string(j), b.String())
	}
	// A Reader holds decrypted bytes and the cipher: it prints as its locator and size.
	ra, err := OpenReader(ref, bytes.NewReader(obj), int64(len(obj)))
	if err != nil {
		t.Fatal(err)
	}
	ra.ReadAt(make([]byte, 4), 0)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(verb, ra)
		if !strings.HasPrefix(s, "dedup.Reader(") {
			t.Errorf("%s of a Reader: %q", verb, s)
		}
		out = append(out, s)
	}
	// Errors: wrong key, tampered object, wrong size, short source, bad metadata.
	bad := bytes.Clone(obj)
	bad[len(bad)-1] ^= 1
	_, e1 := Open(ref, bad)
	_, e2 := openContent(testCS(9), ref.Size, obj)
	_, e3 := OpenReader(Ref{ref.Locator, ref.Key, ref.Size + 1000}, bytes.NewReader(obj), int64(len(obj)))
	_, e4 := Seal(cs, bytes.NewReader(p[:10]), int64(len(p)), &bytes.Buffer{})
	m, mloc, _ := SealMeta(cs, "tree", p)
	_, e5 := OpenMeta(testCS(9), "tree", mloc, m)
	_, e6 := OpenRoot(cs, 1, m)
	for i, e := range []error{e1, e2, e3, e4, e5, e6} {
		if e == nil {
			t.Fatalf("error %d is nil", i+1)
		}
		out = append(out, e.Error(), fmt.Sprintf("%+v", e))
	}
	all := strings.Join(out, "\n")
	for _, s := range [][]byte{cs, ref.Key, p[:16]} {
		for _, form := range []string{string(s), hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s), fmt.Sprint(s)} {
			if strings.Contains(all, form) {
				t.Fatalf("secret or plaintext printed (form %.12q)", form)
			}
		}
	}
}
