package core

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"

	"golang.org/x/crypto/hkdf"

	"github.com/imgfs/imgfs/dedup/keyring"
)

// Everything under CacheDir that holds plaintext-derived data is encrypted with subkeys of
// K_local (docs/core.md, "Nothing in the cache is plaintext"): bbolt values are AES-256-GCM sealed with the bucket and key as
// AAD, and names used as bbolt keys are replaced by a keyed hash, so the database file shows
// inode numbers and record counts but no names, sizes, times or content keys.

func subkey(k keyring.Secret, info string) []byte {
	out := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, k, nil, []byte(info)), out); err != nil {
		panic(err) // HKDF with 32 bytes of output cannot fail
	}
	return out
}

func newAEAD(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // 32-byte key
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return g
}

type localCrypto struct {
	db      cipher.AEAD
	nameKey []byte
	spool   keyring.Secret // HKDF input for per-spool-file keys
}

func newLocalCrypto(k keyring.Secret) *localCrypto {
	return &localCrypto{
		db:      newAEAD(subkey(k, "imgfs v1 local db")),
		nameKey: subkey(k, "imgfs v1 local names"),
		spool:   subkey(k, "imgfs v1 local spool"),
	}
}

var errLocalAuth = errors.New("local record failed authentication")

// seal encrypts a bbolt value; aad binds it to its bucket and key.
func (c *localCrypto) seal(bucket string, key, plain []byte) []byte {
	nonce := make([]byte, 12, 12+len(plain)+16)
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	return c.db.Seal(nonce, nonce, plain, dbAAD(bucket, key))
}

func (c *localCrypto) open(bucket string, key, sealed []byte) ([]byte, error) {
	if len(sealed) < 12+16 {
		return nil, errLocalAuth
	}
	p, err := c.db.Open(nil, sealed[:12], sealed[12:], dbAAD(bucket, key))
	if err != nil {
		return nil, errLocalAuth
	}
	return p, nil
}

func dbAAD(bucket string, key []byte) []byte {
	a := make([]byte, 0, 2+len(bucket)+len(key))
	a = append(a, byte(len(bucket)))
	a = append(a, bucket...)
	return append(a, key...)
}

// nameHash is the bbolt key part that stands for a name: 16 bytes of HMAC(K_names, name).
func (c *localCrypto) nameHash(kind byte, name []byte) []byte {
	m := hmac.New(sha256.New, c.nameKey)
	m.Write([]byte{kind})
	m.Write(name)
	return m.Sum(nil)[:16]
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// direntKey = parent ino || nameHash(name): entries of one directory are one key range.
func (c *localCrypto) direntKey(parent Ino, name string) []byte {
	return append(be64(uint64(parent)), c.nameHash('d', []byte(name))...)
}

func (c *localCrypto) xattrKey(ino Ino, name string) []byte {
	return append(be64(uint64(ino)), c.nameHash('x', []byte(name))...)
}

func (c *localCrypto) auxKey(table string, key []byte) []byte {
	return c.nameHash('a', append([]byte(table+"\x00"), key...))
}
