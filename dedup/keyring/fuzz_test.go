package keyring

// Fuzz targets for the stored bytes of this package (docs/security-tests.md T26, T27, T34): vault
// header, key slot, slot names, and Unlock over arbitrary header + slot bytes. Each
// asserts no panic and, for accepted inputs, that re-encoding gives back the input.
// A brief run: go test -run=^$ -fuzz=^FuzzParseHeader$ -fuzztime=10s ./dedup/keyring/

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	mrand "math/rand/v2"
	"testing"

	"github.com/imgfs/imgfs/dedup/internal/memstore"
)

func flips(b []byte) [][]byte {
	out := [][]byte{b, b[:len(b)-1], append(bytes.Clone(b), 0)}
	for _, at := range []int{0, 9, 30, len(b) / 2, len(b) - 1} {
		m := bytes.Clone(b)
		m[at] ^= 0x20
		out = append(out, m)
	}
	return out
}

// fuzzVault creates a vault with passphrase "pw" under the cheap KDF, with deterministic
// randomness: the fuzzing coordinator and its workers must build the same seed vault.
func fuzzVault(f *testing.F, mode string) (hdr, slot []byte, k *Keys) {
	old := randRead
	r := mrand.NewChaCha8([32]byte{byte(len(mode))})
	randRead = func(b []byte) (int, error) { return r.Read(b) }
	defer func() { randRead = old }()
	st := memstore.New()
	opts := CreateOptions{Mode: mode, KDF: MinKDF}
	if mode == ModeGroup {
		opts.ConvergenceSecret = bytes.Repeat([]byte{7}, 32)
	}
	k, err := Create(ctx, st, []byte("pw"), opts)
	if err != nil {
		f.Fatal(err)
	}
	return st.Raw(HeaderName), st.Raw(st.Names(SlotPrefix)[0]), k
}

func encodeHeader(h *header) []byte {
	if h.gen > 0 {
		b := append(headerMagic[:], formatVersion2, modeBytes[h.mode], 0, 0, 0, 0, 0, 0)
		b = append(b, h.vid[:]...)
		b = binary.BigEndian.AppendUint64(b, h.gen)
		b = append(b, h.prev[:]...)
		b = binary.BigEndian.AppendUint64(b, h.switchSeq)
		b = append(b, h.switchHash[:]...)
		b = append(b, h.nonce...)
		b = append(b, h.encCS...)
		return append(b, h.mac...)
	}
	b := append(headerMagic[:], formatVersion, modeBytes[h.mode], 0, 0, 0, 0, 0, 0)
	b = append(b, h.vid[:]...)
	b = append(b, h.nonce...)
	b = append(b, h.encCS...)
	return append(b, h.mac...)
}

// FuzzParseHeader (T26): the vault header parser, generation 0 and later generations.
func FuzzParseHeader(f *testing.F) {
	cheapKDF(f)
	for _, m := range []string{ModeVault, ModeGroup, ModeGlobal} {
		hdr, _, k := fuzzVault(f, m)
		for _, b := range flips(hdr) {
			f.Add(b)
		}
		v2, err := buildHeaderV2(k, 3, [32]byte{1}, 9, [32]byte{2})
		if err != nil {
			f.Fatal(err)
		}
		for _, b := range flips(v2) {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeHeader(h), b) {
			t.Fatal("accepted header does not re-encode to the same bytes")
		}
	})
}

func encodeSlot(s *slot) []byte {
	b := append(slotMagic[:], formatVersion, s.mode, 0, 0)
	b = append(b, s.vid[:]...)
	b = append(b, encodeParams(s.params)...)
	b = append(b, 0, 0, 0)
	for _, p := range [][]byte{s.salt, s.nonce, s.wrapped, s.commit, s.mac} {
		b = append(b, p...)
	}
	return b
}

// FuzzParseSlot (T27): the key-slot decoder, and unwrapping it with a fixed passphrase.
func FuzzParseSlot(f *testing.F) {
	cheapKDF(f)
	_, slot, k := fuzzVault(f, ModeVault)
	for _, b := range flips(slot) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSlot(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeSlot(s), b) {
			t.Fatal("accepted slot does not re-encode to the same bytes")
		}
		if mk, err := unwrapSlot(s, []byte("pw")); err == nil && !bytes.Equal(mk, k.MasterKey) {
			t.Fatal("a slot unwrapped to another master key")
		}
	})
}

// FuzzParseSlotName (T34): slot store keys from List.
func FuzzParseSlotName(f *testing.F) {
	f.Add(SlotName([]byte("x")))
	f.Add("k/" + string(bytes.Repeat([]byte{'A'}, 64)))
	f.Add("k/")
	f.Fuzz(func(t *testing.T, name string) {
		h, err := ParseSlotName(name)
		if err != nil {
			return
		}
		if SlotPrefix+hexString(h[:]) != name {
			t.Fatalf("slot name %q does not re-encode", name)
		}
	})
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// FuzzUnlock (T26/T27 end to end): arbitrary header and slot bytes in a store, unlocked
// with the seed vault's passphrase under the cheap KDF. No panic; anything accepted must
// be exactly the genuine vault's keys (nobody without them can build an accepted pair).
func FuzzUnlock(f *testing.F) {
	cheapKDF(f)
	hdr, slot, k := fuzzVault(f, ModeVault)
	for _, h := range flips(hdr) {
		f.Add(h, slot)
	}
	for _, s := range flips(slot) {
		f.Add(hdr, s)
	}
	f.Fuzz(func(t *testing.T, h, s []byte) {
		st := memstore.New()
		st.SetRaw(HeaderName, h)
		st.SetRaw(SlotName(s), s)
		got, err := Unlock(ctx, st, []byte("pw"))
		if err != nil {
			if err != ErrWrongPassphrase {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !bytes.Equal(got.MasterKey, k.MasterKey) || !bytes.Equal(got.ConvergenceSecret, k.ConvergenceSecret) ||
			got.VaultID != k.VaultID || got.Mode != k.Mode || !bytes.Equal(h, hdr) {
			t.Fatal("Unlock accepted bytes other than the genuine vault's")
		}
	})
}

// FuzzParseGenerationName: the header generation names listed from the store.
func FuzzParseGenerationName(f *testing.F) {
	for _, s := range []string{GenerationName(1), GenerationName(1<<63 + 5), "h/00000000000000000000", "h/1", "h/0000000000000000000a", "h/99999999999999999999", "vault"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGenerationName(s)
		if err != nil {
			return
		}
		if g == 0 || GenerationName(g) != s {
			t.Fatalf("accepted %q as %d, which prints as %q", s, g, GenerationName(g))
		}
	})
}

// FuzzUnlockGenerations: arbitrary bytes as a second header generation and its switch
// root beside a genuine generation 0. Unlock must not panic, and must return either the
// genuine generation-0 keys or an error: nobody without the master key can make a forged
// generation current.
func FuzzUnlockGenerations(f *testing.F) {
	cheapKDF(f)
	hdr, slot, k := fuzzVault(f, ModeVault)
	root := []byte("a root object")
	sum := sha256.Sum256(root)
	v2, err := buildHeaderV2(k, 1, sha256.Sum256(hdr), 4, sum)
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range flips(v2) {
		f.Add(b, root)
	}
	f.Fuzz(func(t *testing.T, h, r []byte) {
		st := memstore.New()
		st.SetRaw(HeaderName, hdr)
		st.SetRaw(SlotName(slot), slot)
		st.SetRaw(GenerationName(1), h)
		st.SetRaw(rootName(4), r)
		got, err := Unlock(ctx, st, []byte("pw"))
		if err != nil {
			return
		}
		if got.Generation == 0 {
			if !bytes.Equal(got.MasterKey, k.MasterKey) {
				t.Fatal("generation 0 unlocked to other keys")
			}
			return
		}
		// A generation-1 header made by the genuine keys (a seed) is the only one accepted.
		if !bytes.Equal(got.MasterKey, k.MasterKey) {
			t.Fatal("a forged header generation was accepted")
		}
	})
}
