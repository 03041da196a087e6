package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Byte layouts of the vault header and key slots (docs/format.md).
//
// Header object "vault" (124 bytes, immutable; generation 0, later ones in generation.go):
//
//	0  8  magic "IMGFSVLT"
//	8  1  format version (1)
//	9  1  mode (1 vault, 2 group, 3 global)
//	10 6  zero
//	16 16 VID
//	32 12 nonce
//	44 48 AES-256-GCM(K_cs, nonce, CS, AAD = "imgfs v1 header cs" || bytes[0:32])
//	92 32 HMAC(K_hdr, "imgfs v1 header mac" || bytes[0:92])
//
// Slot object "k/" + hex(SHA-256(slot)) (196 bytes, immutable):
//
//	0   8  magic "IMGFSKEY"
//	8   1  format version (1)
//	9   1  mode (must equal the header's)
//	10  2  zero
//	12  16 VID (must equal the header's)
//	28  9  params: u32be t, u32be m (KiB), u8 p
//	37  3  zero
//	40  32 salt
//	72  12 nonce
//	84  48 wrapped = AES-256-GCM(KEK, nonce, MK, AAD = "imgfs v1 slot" || VID || mode || params)
//	132 32 commit  = HMAC(KCK, "imgfs v1 slot commit" || VID || mode || params || nonce || wrapped)
//	164 32 slotmac = HMAC(K_hdr, "imgfs v1 slot mac" || bytes[0:164])
const (
	HeaderName = "vault" // store key of the vault header
	SlotPrefix = "k/"    // store keys of passphrase slots

	formatVersion = 1
	headerSize    = 124
	slotSize      = 196
	keyLen        = 32
	vidLen        = 16
)

var (
	headerMagic = [8]byte{'I', 'M', 'G', 'F', 'S', 'V', 'L', 'T'}
	slotMagic   = [8]byte{'I', 'M', 'G', 'F', 'S', 'K', 'E', 'Y'}
)

var modeBytes = map[string]byte{ModeVault: 1, ModeGroup: 2, ModeGlobal: 3}

func modeName(b byte) (string, bool) {
	for k, v := range modeBytes {
		if v == b {
			return k, true
		}
	}
	return "", false
}

// header is the parsed vault header.
type header struct {
	raw   []byte
	mode  string
	vid   [vidLen]byte
	nonce []byte
	encCS []byte
	mac   []byte
	// generation ≥ 1 only (generation.go)
	gen        uint64
	prev       [32]byte
	switchSeq  uint64
	switchHash [32]byte
}

var errDamaged = errors.New("damaged") // internal; callers see ErrWrongPassphrase

// parseHeader parses generation 0 (format version 1) and later generations (version 2).
func parseHeader(b []byte) (*header, error) {
	if len(b) == headerV2Size {
		return parseHeaderV2(b)
	}
	if len(b) != headerSize || [8]byte(b[0:8]) != headerMagic || b[8] != formatVersion || !zero(b[10:16]) {
		return nil, errDamaged
	}
	mode, ok := modeName(b[9])
	if !ok {
		return nil, errDamaged
	}
	return &header{raw: b, mode: mode, vid: [vidLen]byte(b[16:32]), nonce: b[32:44], encCS: b[44:92], mac: b[92:124]}, nil
}

func zero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// slot is a parsed key slot.
type slot struct {
	raw     []byte
	mode    byte
	vid     [vidLen]byte
	params  KDFParams
	salt    []byte
	nonce   []byte
	wrapped []byte
	commit  []byte
	mac     []byte
}

func parseSlot(b []byte) (*slot, error) {
	if len(b) != slotSize || [8]byte(b[0:8]) != slotMagic || b[8] != formatVersion || !zero(b[10:12]) || !zero(b[37:40]) {
		return nil, errDamaged
	}
	if _, ok := modeName(b[9]); !ok {
		return nil, errDamaged
	}
	p := KDFParams{Time: binary.BigEndian.Uint32(b[28:32]), MemoryKiB: binary.BigEndian.Uint32(b[32:36]), Threads: b[36]}
	if p.check() != nil {
		return nil, errDamaged
	}
	return &slot{raw: b, mode: b[9], vid: [vidLen]byte(b[12:28]), params: p, salt: b[40:72],
		nonce: b[72:84], wrapped: b[84:132], commit: b[132:164], mac: b[164:196]}, nil
}

func encodeParams(p KDFParams) []byte {
	b := make([]byte, 9)
	binary.BigEndian.PutUint32(b[0:4], p.Time)
	binary.BigEndian.PutUint32(b[4:8], p.MemoryKiB)
	b[8] = p.Threads
	return b
}

func slotAAD(vid [vidLen]byte, mode byte, params []byte) []byte {
	a := append([]byte("imgfs v1 slot"), vid[:]...)
	a = append(a, mode)
	return append(a, params...)
}

func slotCommit(kck []byte, s *slot) []byte {
	return mac(kck, []byte("imgfs v1 slot commit"), s.vid[:], []byte{s.mode}, s.raw[28:37], s.nonce, s.wrapped)
}

// SlotName is the store key of a slot: "k/" + hex(SHA-256(slot bytes)).
func SlotName(raw []byte) string {
	h := sha256.Sum256(raw)
	return SlotPrefix + hex.EncodeToString(h[:])
}

// ParseSlotName checks that name is a canonical slot key and returns its hash.
func ParseSlotName(name string) ([32]byte, error) {
	var h [32]byte
	if len(name) != len(SlotPrefix)+64 || name[:len(SlotPrefix)] != SlotPrefix {
		return h, errors.New("keyring: not a slot name")
	}
	for _, c := range []byte(name[len(SlotPrefix):]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return h, errors.New("keyring: not a slot name")
		}
	}
	hex.Decode(h[:], []byte(name[len(SlotPrefix):]))
	return h, nil
}

func mac(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

func hkdf32(secret, salt []byte, info string) Secret {
	k, err := hkdf.Key(sha256.New, secret, salt, info, keyLen)
	if err != nil {
		panic("keyring: hkdf: " + err.Error())
	}
	return k
}

func gcm(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic("keyring: aes key length")
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic("keyring: gcm")
	}
	return g
}

// Argon2id parameter bounds. Floors follow RFC 9106's second recommendation (docs/format.md
// §4); ceilings stop a damaged or hostile slot from asking for absurd work or memory.
var (
	DefaultKDF = KDFParams{Time: 3, MemoryKiB: 256 * 1024, Threads: 4}
	MinKDF     = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 1}
	MaxKDF     = KDFParams{Time: 64, MemoryKiB: 4 * 1024 * 1024, Threads: 64}
)

func (p KDFParams) check() error {
	if p.Time < MinKDF.Time || p.MemoryKiB < MinKDF.MemoryKiB || p.Threads < MinKDF.Threads {
		return fmt.Errorf("keyring: Argon2id parameters below the floor (t>=%d, m>=%d KiB, p>=%d)", MinKDF.Time, MinKDF.MemoryKiB, MinKDF.Threads)
	}
	if p.Time > MaxKDF.Time || p.MemoryKiB > MaxKDF.MemoryKiB || p.Threads > MaxKDF.Threads {
		return fmt.Errorf("keyring: Argon2id parameters above the ceiling (t<=%d, m<=%d KiB, p<=%d)", MaxKDF.Time, MaxKDF.MemoryKiB, MaxKDF.Threads)
	}
	return nil
}
