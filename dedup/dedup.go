// Package dedup implements format-v1 content and metadata objects (docs/format.md §5-§9):
// convergent keys, AES-256-GCM STREAM segments, key commitment, Padme padding, the
// SHA-256 locator and the dedup check against a backend.Store. The byte layout is in
// docs/format.md.
//
// Files: padme.go (sizes), stream.go (segments), content.go (Seal/Open/OpenReader),
// meta.go (SealMeta/OpenMeta/SealRoot/OpenRoot), names.go (store keys), upload.go (Upload).
package dedup

import "github.com/imgfs/imgfs/dedup/keyring"

// Locator is the SHA-256 of a whole stored object.
type Locator [32]byte

// Ref is everything needed to read one content object back.
type Ref struct {
	Locator Locator
	Key     keyring.Secret // K_c, 32 bytes
	Size    int64          // plaintext size
}
