package dedup

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/imgfs/imgfs/dedup/keyring"
)

// Metadata and root objects use the content STREAM layout with a 48-byte header that
// carries a random salt, so every object gets its own one-time key (docs/format.md §6):
//
//	header = "IMGFS" 0x01 kind(1) 0x00 aead(1) segLog2(1) 6*0x00 salt(32)
//	commit = HMAC(K_com, header || ctx)          ctx = u8(len kind) kind u8(len name) name
//	AAD    = header || commit || ctx
//
// kind byte is 'm' for metadata objects and 'r' for root pointers; name is the store key
// for roots (binding a root to its sequence number) and empty for metadata objects.
const (
	metaHeaderLen = 16 + 32
	metaStart     = metaHeaderLen + commitLen
	saltLen       = 32

	// MaxMetaSize bounds one metadata plaintext (1 GiB).
	MaxMetaSize = 1 << 30

	kindMeta = 'm'
	kindRoot = 'r'
)

func metaFixed(kindByte byte) [16]byte {
	return [16]byte{'I', 'M', 'G', 'F', 'S', 0x01, kindByte, 0x00, aeadAESGCM, segLog2}
}

// validKind keeps kinds short and printable: 1-32 of [a-z0-9_-].
func validKind(kind string) error {
	if len(kind) == 0 || len(kind) > 32 {
		return errors.New("dedup: metadata kind must be 1-32 characters")
	}
	for i := 0; i < len(kind); i++ {
		c := kind[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return errors.New("dedup: metadata kind must be [a-z0-9_-]")
		}
	}
	return nil
}

func metaCtx(kind, name string) []byte {
	b := make([]byte, 0, 2+len(kind)+len(name))
	b = append(b, byte(len(kind)))
	b = append(b, kind...)
	b = append(b, byte(len(name)))
	return append(b, name...)
}

// metaKeys derives the one-time encryption and commitment keys of one object.
func metaKeys(metaKey []byte, salt []byte, kind string) (kenc, kcom []byte) {
	k := hkdf32(metaKey, salt, "imgfs v1 meta "+kind)
	return hkdf32(k, nil, "imgfs v1 meta enc"), hkdf32(k, nil, "imgfs v1 meta commit")
}

func sealMetaObject(metaKey []byte, kindByte byte, kind, name string, plain []byte) ([]byte, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("dedup: random salt: %w", err)
	}
	return sealMetaSalt(metaKey, kindByte, kind, name, plain, salt)
}

// sealMetaSalt seals with a given salt (tests use a fixed one for known-answer vectors).
func sealMetaSalt(metaKey []byte, kindByte byte, kind, name string, plain, salt []byte) ([]byte, error) {
	if len(metaKey) != 32 {
		return nil, errors.New("dedup: metadata key must be 32 bytes")
	}
	if err := validKind(kind); err != nil {
		return nil, err
	}
	if len(plain) > MaxMetaSize {
		return nil, fmt.Errorf("dedup: metadata object of %d bytes is too large", len(plain))
	}
	hdr := make([]byte, metaHeaderLen)
	fixed := metaFixed(kindByte)
	copy(hdr, fixed[:])
	copy(hdr[16:], salt)
	kenc, kcom := metaKeys(metaKey, hdr[16:], kind)
	ctx := metaCtx(kind, name)
	commit := hmacSHA256(kcom, hdr, ctx)
	aad := make([]byte, 0, metaStart+len(ctx))
	aad = append(append(append(aad, hdr...), commit...), ctx...)

	size := int64(len(plain))
	st := newStream(newGCM(kenc), aad, metaStart, streamLen(size))
	obj := make([]byte, metaStart, st.objLen())
	copy(obj, aad[:metaStart])
	seg := make([]byte, segSize)
	for i := int64(0); i < st.n; i++ {
		base := i * segSize
		pn := min(int64(segSize), st.sl-base)
		s := seg[:pn]
		w := int64(0)
		if i == 0 {
			binary.BigEndian.PutUint64(s[0:8], uint64(size))
			clear(s[8:16])
			w = innerLen
		}
		if pOff := base + w - innerLen; pOff < size {
			w += int64(copy(s[w:], plain[pOff:]))
		}
		clear(s[w:])
		obj = st.sealSeg(obj, s, i)
	}
	return obj, nil
}

// openMetaObject verifies header, commitment (before any GCM), length, every segment,
// the inner length and the padding.
func openMetaObject(metaKey []byte, kindByte byte, kind, name string, obj []byte) ([]byte, error) {
	if len(metaKey) != 32 {
		return nil, errors.New("dedup: metadata key must be 32 bytes")
	}
	if err := validKind(kind); err != nil {
		return nil, err
	}
	if len(obj) < metaStart {
		return nil, corrupt("short metadata object")
	}
	fixed := metaFixed(kindByte)
	if [16]byte(obj[:16]) != fixed {
		return nil, corrupt("bad metadata header")
	}
	sl, ok := streamFromBody(int64(len(obj)) - metaStart)
	if !ok {
		return nil, corrupt("metadata object length")
	}
	hdr := obj[:metaHeaderLen]
	kenc, kcom := metaKeys(metaKey, hdr[16:], kind)
	ctx := metaCtx(kind, name)
	if !hmac.Equal(hmacSHA256(kcom, hdr, ctx), obj[metaHeaderLen:metaStart]) {
		return nil, corrupt("metadata key commitment mismatch")
	}
	aad := make([]byte, 0, metaStart+len(ctx))
	aad = append(append(aad, obj[:metaStart]...), ctx...)
	st := newStream(newGCM(kenc), aad, metaStart, sl)

	// Segment 0 declares the payload length; it must be canonical for this stream length.
	out := make([]byte, sl) // sl < len(obj): bounded by the input
	off, clen := st.seg(0)
	pt, err := st.openSeg(out[:0], obj[off:off+clen], 0)
	if err != nil {
		return nil, err
	}
	size := int64(binary.BigEndian.Uint64(pt[0:8]))
	if size < 0 || size > MaxMetaSize || streamLen(size) != sl {
		return nil, corrupt("metadata inner length")
	}
	if err := checkLayout(pt, 0, size); err != nil {
		return nil, err
	}
	for i := int64(1); i < st.n; i++ {
		off, clen := st.seg(i)
		pt, err := st.openSeg(out[i*segSize:i*segSize], obj[off:off+clen], i)
		if err != nil {
			return nil, err
		}
		if err := checkLayout(pt, i, size); err != nil {
			return nil, err
		}
	}
	return out[innerLen : innerLen+size : innerLen+size], nil
}

// SealMeta encrypts a metadata object of the given kind ("tree", "emb", ...; 1-32 of
// [a-z0-9_-]). Each call uses a fresh random salt, so equal inputs give different objects.
// loc is SHA-256(obj); store it under MetaName(loc).
func SealMeta(metaKey keyring.Secret, kind string, plain []byte) (obj []byte, loc Locator, err error) {
	obj, err = sealMetaObject(metaKey, kindMeta, kind, "", plain)
	if err != nil {
		return nil, Locator{}, err
	}
	return obj, Hash(obj), nil
}

// OpenMeta verifies SHA-256(obj) == loc, then decrypts a metadata object of that kind.
func OpenMeta(metaKey keyring.Secret, kind string, loc Locator, obj []byte) ([]byte, error) {
	if Hash(obj) != loc {
		return nil, corrupt("metadata object hash does not match its locator")
	}
	return openMetaObject(metaKey, kindMeta, kind, "", obj)
}

const rootKind = "root"

// SealRoot encrypts root pointer number seq. The AAD binds the store key RootName(seq), so
// a root copied to another sequence number fails to open. hash = SHA-256(obj), for the
// client's anchor and the next root's prev-hash field.
func SealRoot(metaKey keyring.Secret, seq uint64, plain []byte) (obj []byte, hash Locator, err error) {
	obj, err = sealMetaObject(metaKey, kindRoot, rootKind, RootName(seq), plain)
	if err != nil {
		return nil, Locator{}, err
	}
	return obj, Hash(obj), nil
}

// OpenRoot verifies and decrypts the root pointer stored under RootName(seq).
func OpenRoot(metaKey keyring.Secret, seq uint64, obj []byte) ([]byte, error) {
	return openMetaObject(metaKey, kindRoot, rootKind, RootName(seq), obj)
}
