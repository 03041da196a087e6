package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/imgfs/imgfs/dedup/internal/memstore"
)

// TestHeaderV2KnownAnswer builds a generation header from fixed keys and randomness and
// compares it with the bytes assembled here from the layout in docs/format.md §3.1 with
// the standard library primitives directly, and with a pinned digest.
func TestHeaderV2KnownAnswer(t *testing.T) {
	old := randRead
	randRead = func(b []byte) (int, error) {
		for i := range b {
			b[i] = 0x04
		}
		return len(b), nil
	}
	defer func() { randRead = old }()
	mk := bytes.Repeat([]byte{0x01}, 32)
	vid := [16]byte(bytes.Repeat([]byte{0x02}, 16))
	k := deriveKeys(mk, vid, ModeVault)
	k.ConvergenceSecret = bytes.Repeat([]byte{0x03}, 32)
	prev := [32]byte(bytes.Repeat([]byte{0x05}, 32))
	root := [32]byte(bytes.Repeat([]byte{0x06}, 32))
	got, err := buildHeaderV2(k, 7, prev, 9, root)
	if err != nil {
		t.Fatal(err)
	}

	h := func(secret, salt []byte, info string) []byte {
		out, err := hkdf.Key(sha256.New, secret, salt, info, 32)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	kMeta := h(mk, vid[:], "imgfs v1 metadata")
	kHdr := h(mk, vid[:], "imgfs v1 header mac")
	kCS := h(kMeta, vid[:], "imgfs v1 header cs")
	var want []byte
	want = append(want, "IMGFSVLT"...)
	want = append(want, 2, 1, 0, 0, 0, 0, 0, 0)
	want = append(want, vid[:]...)
	want = binary.BigEndian.AppendUint64(want, 7)
	want = append(want, prev[:]...)
	want = binary.BigEndian.AppendUint64(want, 9)
	want = append(want, root[:]...)
	nonce := bytes.Repeat([]byte{0x04}, 12)
	want = append(want, nonce...)
	blk, _ := aes.NewCipher(kCS)
	g, _ := cipher.NewGCM(blk)
	want = g.Seal(want, nonce, bytes.Repeat([]byte{0x03}, 32), append([]byte("imgfs v2 header cs"), want[:124]...))
	m := hmac.New(sha256.New, kHdr)
	m.Write([]byte("imgfs v2 header mac"))
	m.Write(want)
	want = m.Sum(want)
	if !bytes.Equal(got, want) {
		t.Fatalf("header generation bytes differ from the documented layout:\n got %x\nwant %x", got, want)
	}
	sum := sha256.Sum256(got)
	const pinned = "202bb04f1898092f798a1a40468913724a8e1e2687e884afa93d68cb9726a3d1"
	if hex.EncodeToString(sum[:]) != pinned {
		t.Fatalf("header generation digest %x, pinned %s", sum, pinned)
	}

	p, err := parseHeader(got)
	if err != nil || p.gen != 7 || p.prev != prev || p.switchSeq != 9 || p.switchHash != root || p.vid != vid || p.mode != ModeVault {
		t.Fatalf("parse: %v %+v", err, p)
	}
	cs, err := openHeader(p, k)
	if err != nil || !bytes.Equal(cs, k.ConvergenceSecret) {
		t.Fatalf("open: %v", err)
	}
	for i := range got { // every byte is covered by the MAC or checked by the parser
		b := bytes.Clone(got)
		b[i] ^= 1
		if p, err := parseHeader(b); err == nil {
			if _, err := openHeader(p, k); err == nil {
				t.Fatalf("flipped byte %d accepted", i)
			}
		}
	}
}

// rekeyed stages generation 1 of a new vault with switch root r/5 = root and returns the
// store, the old and the staged keys.
func rekeyed(t *testing.T, root []byte) (*memstore.Store, *Keys, *Keys) {
	t.Helper()
	st, k := newVault(t, "pw")
	k.Generation = 0
	next, err := NewGeneration(k)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(next.MasterKey, k.MasterKey) || bytes.Equal(next.ConvergenceSecret, k.ConvergenceSecret) || next.VaultID != k.VaultID {
		t.Fatal("NewGeneration kept a key or changed the vault id")
	}
	if err := WriteGeneration(ctx, st, k, next, []byte("pw"), MinKDF, 5, sha256.Sum256(root)); err != nil {
		t.Fatal(err)
	}
	if next.Generation != 1 {
		t.Fatalf("generation %d", next.Generation)
	}
	return st, k, next
}

func mustUnlock(t *testing.T, st *memstore.Store, pass string) *Keys {
	t.Helper()
	k, err := Unlock(ctx, st, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestGenerationSwitch: a staged generation is not used until its switch root is in place;
// then it is, and after FinishGeneration only it and its slot remain, and it stays current
// when gc deletes the switch root.
func TestGenerationSwitch(t *testing.T) {
	cheapKDF(t)
	root := []byte("the first root under the new keys")
	st, k, next := rekeyed(t, root)

	if u := mustUnlock(t, st, "pw"); u.Generation != 0 || !bytes.Equal(u.MasterKey, k.MasterKey) {
		t.Fatal("a staged generation was used before its switch root exists")
	}
	s, err := Staged(ctx, st, []byte("pw"))
	if err != nil || s == nil || !bytes.Equal(s.MasterKey, next.MasterKey) || !bytes.Equal(s.ConvergenceSecret, next.ConvergenceSecret) {
		t.Fatalf("Staged: %v", err)
	}
	// A root by another device at r/5 (another hash) leaves the generation staged.
	st.SetRaw(rootName(5), []byte("a root written under the old keys"))
	if u := mustUnlock(t, st, "pw"); u.Generation != 0 {
		t.Fatal("a staged generation whose switch root lost the race was used")
	}
	st.Delete(ctx, rootName(5))
	st.SetRaw(rootName(5), root)
	u := mustUnlock(t, st, "pw")
	if u.Generation != 1 || !bytes.Equal(u.MasterKey, next.MasterKey) || !bytes.Equal(u.ConvergenceSecret, next.ConvergenceSecret) {
		t.Fatal("the switched generation is not current")
	}
	if n, err := Staged(ctx, st, []byte("pw")); err != nil || n != nil {
		t.Fatalf("Staged after the switch: %v %v", n, err)
	}
	if staged, older, err := Leftovers(ctx, st); err != nil || staged != 0 || older != 1 {
		t.Fatalf("leftovers %d %d %v", staged, older, err)
	}
	if _, err := FinishGeneration(ctx, st, k); err == nil {
		t.Fatal("FinishGeneration accepted the old keys")
	}
	removed, err := FinishGeneration(ctx, st, u)
	if err != nil || removed != 1 {
		t.Fatalf("FinishGeneration: removed %d, %v", removed, err)
	}
	if names := st.Names(""); len(names) != 3 { // h/1, its slot, r/5
		t.Fatalf("left in the store: %v", names)
	}
	// Nothing left opens under the old master key: the header's MAC and every slot fail.
	if _, err := unlockHeader(ctx, st, mustHeaders(t, st).current, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	for _, name := range st.Names(SlotPrefix) {
		sl, _ := parseSlot(st.Raw(name))
		if slotMACOK(sl, k) {
			t.Fatal("a slot of the old master key is left")
		}
	}
	if _, err := openHeader(mustHeaders(t, st).current, k); err == nil {
		t.Fatal("the old keys open the current header")
	}
	// gc collects the switch root later: the generation stays current.
	st.Delete(ctx, rootName(5))
	if u := mustUnlock(t, st, "pw"); u.Generation != 1 {
		t.Fatal("the current generation depends on its switch root after the rekey finished")
	}
	if _, err := Unlock(ctx, st, []byte("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if ok, err := Exists(ctx, st); err != nil || !ok {
		t.Fatal("Exists without the generation-0 header")
	}
	if _, err := Create(ctx, st, []byte("x"), CreateOptions{KDF: MinKDF}); !errors.Is(err, ErrVaultExists) {
		t.Fatalf("Create over a rekeyed vault: %v", err)
	}
}

func mustHeaders(t *testing.T, st *memstore.Store) *headerSet {
	t.Helper()
	set, err := readHeaders(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestGenerationRollbackRefused: a store that serves the old header and slot again (a
// restored backup, or a malicious store) gives the old generation, which CheckGeneration
// refuses for a device that has seen the new one.
func TestGenerationRollbackRefused(t *testing.T) {
	cheapKDF(t)
	root := []byte("root")
	st, _, _ := rekeyed(t, root)
	oldHdr := st.Raw(HeaderName)
	oldSlotBytes := map[string][]byte{}
	for _, n := range st.Names(SlotPrefix) {
		oldSlotBytes[n] = st.Raw(n)
	}
	st.SetRaw(rootName(5), root)
	u := mustUnlock(t, st, "pw")
	if _, err := FinishGeneration(ctx, st, u); err != nil {
		t.Fatal(err)
	}
	seen := u.Generation
	// Roll back: the old header and slots come back, the new generation disappears.
	st.SetRaw(HeaderName, oldHdr)
	for n, b := range oldSlotBytes {
		st.SetRaw(n, b)
	}
	newHdr := st.Raw(GenerationName(1))
	st.Delete(ctx, GenerationName(1))
	back := mustUnlock(t, st, "pw")
	if back.Generation != 0 {
		t.Fatalf("generation %d", back.Generation)
	}
	if err := CheckGeneration(seen, back.Generation); !errors.Is(err, ErrHeaderRollback) {
		t.Fatalf("rollback not refused: %v", err)
	}
	// With the new generation still there but its switch root gone, the old header is the
	// oldest left and the new one looks staged: the same check refuses it.
	st.SetRaw(GenerationName(1), newHdr)
	st.Delete(ctx, rootName(5))
	back = mustUnlock(t, st, "pw")
	if err := CheckGeneration(seen, back.Generation); back.Generation != 0 || !errors.Is(err, ErrHeaderRollback) {
		t.Fatalf("generation %d: %v", back.Generation, err)
	}
	if err := CheckGeneration(seen, seen); err != nil {
		t.Fatal(err)
	}
}

func TestGenerationNames(t *testing.T) {
	if GenerationName(12) != "h/00000000000000000012" {
		t.Fatal(GenerationName(12))
	}
	for _, bad := range []string{"h/00000000000000000000", "h/1", "h/0000000000000000001x", "x/00000000000000000001", "h/99999999999999999999"} {
		if _, err := ParseGenerationName(bad); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
	if g, err := ParseGenerationName("h/18446744073709551615"); err != nil || g != 1<<64-1 {
		t.Fatal(g, err)
	}
}

// TestGenerationReservation: a reservation (switch root 0) keeps the new keys for a rerun
// and never becomes current; the switch is a later generation with the same keys.
func TestGenerationReservation(t *testing.T) {
	cheapKDF(t)
	st, k := newVault(t, "pw")
	next, err := NewGeneration(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteGeneration(ctx, st, k, next, []byte("pw"), MinKDF, 0, [32]byte{}); err != nil {
		t.Fatal(err)
	}
	if u := mustUnlock(t, st, "pw"); u.Generation != 0 {
		t.Fatal("a reservation became current")
	}
	again, err := Staged(ctx, st, []byte("pw"))
	if err != nil || again == nil || !bytes.Equal(again.MasterKey, next.MasterKey) || !bytes.Equal(again.ConvergenceSecret, next.ConvergenceSecret) || again.Generation != 1 {
		t.Fatalf("Staged after a reservation: %v", err)
	}
	slots := len(st.Names(SlotPrefix))
	root := []byte("root 3")
	if err := WriteGeneration(ctx, st, k, again, []byte("pw"), MinKDF, 3, sha256.Sum256(root)); err != nil {
		t.Fatal(err)
	}
	if len(st.Names(SlotPrefix)) != slots || again.Generation != 2 {
		t.Fatalf("the switch wrote another slot or generation %d", again.Generation)
	}
	st.SetRaw(rootName(3), root)
	if u := mustUnlock(t, st, "pw"); u.Generation != 2 || !bytes.Equal(u.MasterKey, next.MasterKey) {
		t.Fatal("the switched generation is not current")
	}
	// A finish interrupted after removing the old header, and then gc collects the switch
	// root: the switched generation stays current, not the reservation below it.
	st.Delete(ctx, HeaderName)
	st.Delete(ctx, rootName(3))
	if u := mustUnlock(t, st, "pw"); u.Generation != 2 {
		t.Fatalf("generation %d current, want 2", u.Generation)
	}
	// A reservation with a non-zero hash is malformed.
	b, err := buildHeaderV2(next, 9, [32]byte{}, 0, [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseHeader(b); err == nil {
		t.Fatal("a reservation with a switch hash parsed")
	}
}

// TestNewGenerationSharedModes: group and global vaults keep their convergence secret (it is
// shared with other vaults or public); only the master key changes.
func TestNewGenerationSharedModes(t *testing.T) {
	cheapKDF(t)
	for _, mode := range []string{ModeGroup, ModeGlobal} {
		st := memstore.New()
		k, err := Create(ctx, st, []byte("pw"), CreateOptions{Mode: mode, KDF: MinKDF, ConvergenceSecret: bytes.Repeat([]byte{7}, 32)})
		if err != nil {
			t.Fatal(err)
		}
		n, err := NewGeneration(k)
		if err != nil {
			t.Fatal(err)
		}
		if n.Mode != mode || !bytes.Equal(n.ConvergenceSecret, k.ConvergenceSecret) || bytes.Equal(n.MasterKey, k.MasterKey) {
			t.Fatalf("%s: mode %s, convergence secret kept %v", mode, n.Mode, bytes.Equal(n.ConvergenceSecret, k.ConvergenceSecret))
		}
		if err := WriteGeneration(ctx, st, k, n, []byte("pw"), MinKDF, 2, sha256.Sum256([]byte("r"))); err != nil {
			t.Fatal(err)
		}
		st.SetRaw(rootName(2), []byte("r"))
		if u := mustUnlock(t, st, "pw"); u.Mode != mode || !bytes.Equal(u.ConvergenceSecret, k.ConvergenceSecret) || !bytes.Equal(u.MasterKey, n.MasterKey) {
			t.Fatalf("%s: the switched generation unlocks to other keys", mode)
		}
	}
}
