package dedup

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt is returned (wrapped, with a short reason) for every object that fails
// verification: bad header, commitment, size, segment tag, flags, padding or locator.
// Messages never contain key material or plaintext.
var ErrCorrupt = errors.New("dedup: object failed verification")

func corrupt(reason string) error { return fmt.Errorf("%w: %s", ErrCorrupt, reason) }

const aeadAESGCM = 1 // aead byte; 2 is reserved for XChaCha20-Poly1305

// hkdf32 derives a 32-byte subkey; crypto/hkdf only fails for absurd lengths.
func hkdf32(secret, salt []byte, info string) []byte {
	k, err := hkdf.Key(sha256.New, secret, salt, info, 32)
	if err != nil {
		panic("dedup: hkdf: " + err.Error())
	}
	return k
}

func hmacSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

func newGCM(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic("dedup: aes: " + err.Error()) // only for a key that is not 32 bytes, checked by callers
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic("dedup: gcm: " + err.Error())
	}
	return g
}

// stream is one sealed STREAM object: AES-256-GCM segments of segSize plaintext bytes
// after a prefix of start bytes, nonce = final flag || 0x000000 || u64be(i), fixed AAD.
// Not safe for concurrent use (nonce scratch).
type stream struct {
	aead  cipher.AEAD
	aad   []byte
	start int64    // object offset of segment 0
	sl    int64    // stream (padded plaintext) length
	n     int64    // number of segments
	nc    [12]byte // nonce scratch (a local would escape to the heap on every segment)
}

func newStream(aead cipher.AEAD, aad []byte, start, sl int64) *stream {
	return &stream{aead: aead, aad: aad, start: start, sl: sl, n: segments(sl)}
}

// objLen is the total object length.
func (s *stream) objLen() int64 { return s.start + s.sl + s.n*tagSize }

// seg returns the object offset and ciphertext length of segment i.
func (s *stream) seg(i int64) (off, clen int64) {
	pn := min(int64(segSize), s.sl-i*segSize)
	return s.start + i*(segSize+tagSize), pn + tagSize
}

// nonce returns final flag || 0x000000 || u64be(i) in the scratch buffer.
func (s *stream) nonce(i int64) []byte {
	s.nc = [12]byte{}
	if i == s.n-1 {
		s.nc[0] = 1
	}
	binary.BigEndian.PutUint64(s.nc[4:], uint64(i))
	return s.nc[:]
}

// sealSeg encrypts pt (segment i of the stream) and appends the result to dst.
func (s *stream) sealSeg(dst, pt []byte, i int64) []byte {
	return s.aead.Seal(dst, s.nonce(i), pt, s.aad)
}

// openSeg authenticates and decrypts ciphertext segment i, appending to dst. The nonce
// carries the final flag for the last segment only, so a truncated object, a segment moved
// to another position or a non-final segment at the end all fail here.
func (s *stream) openSeg(dst, ct []byte, i int64) ([]byte, error) {
	if i < 0 || i >= s.n {
		return nil, corrupt("segment index out of range")
	}
	if _, clen := s.seg(i); int64(len(ct)) != clen {
		return nil, corrupt("segment length")
	}
	pt, err := s.aead.Open(dst, s.nonce(i), ct, s.aad)
	if err != nil {
		return nil, corrupt(fmt.Sprintf("segment %d authentication failed", i))
	}
	return pt, nil
}

// checkLayout verifies the decrypted stream bytes pt, starting at stream offset i*segSize:
// the inner header in segment 0 (declared length == payload, reserved word zero) and that
// every byte after the payload is zero.
func checkLayout(pt []byte, i, payload int64) error {
	base := i * segSize
	if i == 0 {
		if len(pt) < innerLen {
			return corrupt("short first segment")
		}
		if binary.BigEndian.Uint64(pt[0:8]) != uint64(payload) {
			return corrupt("inner length mismatch")
		}
		if binary.BigEndian.Uint64(pt[8:16]) != 0 {
			return corrupt("reserved inner word not zero")
		}
	}
	padStart := innerLen + payload - base // first padding byte inside pt
	if padStart < int64(len(pt)) {
		if !allZero(pt[max(padStart, 0):]) {
			return corrupt("padding not zero")
		}
	}
	return nil
}

func allZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return acc == 0
}

// streamFromBody inverts objLen: given the number of bytes after the prefix, it returns the
// stream length, or false when no stream has that body length.
func streamFromBody(body int64) (int64, bool) {
	if body < innerLen+tagSize {
		return 0, false
	}
	full, rem := body/(segSize+tagSize), body%(segSize+tagSize)
	if rem == 0 {
		return full * segSize, true
	}
	if rem <= tagSize {
		return 0, false
	}
	return full*segSize + rem - tagSize, true
}
