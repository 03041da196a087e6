// Package dedup implements format-v1 content and metadata objects (SECURITY.md 5.2-5.5):
// convergent keys, AES-256-GCM STREAM segments, key commitment, Padme padding, the
// SHA-256 locator and the dedup check against a backend.Store.
// CONTRACT (owned by the crypto helper; signatures may grow, not change without updating callers).
package dedup

import (
	"context"
	"io"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// Locator is the SHA-256 of a whole stored object.
type Locator [32]byte

// Ref is everything needed to read one content object back.
type Ref struct {
	Locator Locator
	Key     keyring.Secret // K_c, 32 bytes
	Size    int64          // plaintext size
}

// ContentName is the store key of a content object: "c/" + hex[0:2] + "/" + hex.
func ContentName(l Locator) string { panic("unimplemented") }

// ObjectSize is the stored size of a content object for a plaintext of plainSize bytes.
func ObjectSize(plainSize int64) int64 { panic("unimplemented") }

// Seal reads src twice (key derivation, then encryption) and writes the object to dst.
// Memory stays bounded whatever the size.
func Seal(cs keyring.Secret, src io.ReaderAt, size int64, dst io.Writer) (Ref, error) {
	panic("unimplemented")
}

// Upload stores the sealed object unless the store already has it (the dedup check).
// stored reports whether bytes were uploaded.
func Upload(ctx context.Context, store backend.Store, loc Locator, obj io.ReaderAt, size int64) (stored bool, err error) {
	panic("unimplemented")
}

// OpenReader returns verified random access to the plaintext of the object in obj.
// Every returned byte has passed its segment's GCM check; a failure is ErrCorrupt.
func OpenReader(ref Ref, obj io.ReaderAt, objSize int64) (io.ReaderAt, error) {
	panic("unimplemented")
}

// Open decrypts a whole object, checking SHA-256(obj) == ref.Locator first.
func Open(ref Ref, obj []byte) ([]byte, error) { panic("unimplemented") }

// SealMeta encrypts a metadata object of the given kind ("tree", "emb", "root", ...).
func SealMeta(metaKey keyring.Secret, kind string, plain []byte) (obj []byte, loc Locator, err error) {
	panic("unimplemented")
}

// OpenMeta verifies and decrypts a metadata object.
func OpenMeta(metaKey keyring.Secret, kind string, loc Locator, obj []byte) ([]byte, error) {
	panic("unimplemented")
}
