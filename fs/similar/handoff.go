package similar

import (
	"bytes"
	"sync"

	"github.com/imgfs/imgfs/fs/core"
)

// The plaintext hand-off (core.PlaintextObserver, docs/similar.md "Follow a photo"): when
// the core seals a file that starts like an image, it hands the plaintext it has just read
// to the indexer, which embeds from it instead of reading and decrypting the file again.
// Memory stays bounded: at most handoffPhotos files and handoffBytes bytes are held (the
// oldest goes first), files over handoffFile bytes are not taken, and nothing is taken
// while more than handoffQueue files wait (their turn would come after the hand-off is
// dropped). A worker that finds no hand-off reads the file.
const (
	handoffPhotos = 4
	handoffBytes  = 64 << 20
	handoffFile   = 32 << 20
	handoffQueue  = handoffPhotos
)

type handoffState struct {
	hmu       sync.Mutex
	held      map[[32]byte][]byte
	heldOrder [][32]byte // oldest first
	heldBytes int
	fromPlain int64 // files embedded from a hand-off (Stats.FromPlaintext)
}

var _ core.PlaintextObserver = (*Indexer)(nil)

// WantPlaintext implements core.PlaintextObserver.
func (x *Indexer) WantPlaintext(ino core.Ino, size int64, head []byte) bool {
	if size <= 0 || size > handoffFile || !looksLikeImage(head) {
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return !x.closed && len(x.queue)+len(x.early) <= handoffQueue
}

// Plaintext implements core.PlaintextObserver: it keeps b for the worker that embeds
// content id.
func (x *Indexer) Plaintext(ino core.Ino, id [32]byte, b []byte) {
	x.hmu.Lock()
	defer x.hmu.Unlock()
	if _, ok := x.held[id]; ok || len(b) > handoffFile {
		return
	}
	if x.held == nil {
		x.held = map[[32]byte][]byte{}
	}
	for len(x.heldOrder) > 0 && (len(x.held) >= handoffPhotos || x.heldBytes+len(b) > handoffBytes) {
		x.dropHeldLocked(x.heldOrder[0])
	}
	x.held[id] = b
	x.heldOrder = append(x.heldOrder, id)
	x.heldBytes += len(b)
}

// takePlaintext returns (and forgets) the plaintext of content id, if it is held.
func (x *Indexer) takePlaintext(id [32]byte) ([]byte, bool) {
	x.hmu.Lock()
	defer x.hmu.Unlock()
	b, ok := x.held[id]
	if ok {
		x.dropHeldLocked(id)
		x.fromPlain++
	}
	return b, ok
}

// dropPlaintext forgets the plaintext of content id, if it is held.
func (x *Indexer) dropPlaintext(id [32]byte) {
	x.hmu.Lock()
	defer x.hmu.Unlock()
	if _, ok := x.held[id]; ok {
		x.dropHeldLocked(id)
	}
}

func (x *Indexer) dropHeldLocked(id [32]byte) {
	x.heldBytes -= len(x.held[id])
	delete(x.held, id)
	for i, o := range x.heldOrder {
		if o == id {
			x.heldOrder = append(x.heldOrder[:i], x.heldOrder[i+1:]...)
			break
		}
	}
}

// heldPlaintext is a hand-off read as a file.
type heldPlaintext struct{ *bytes.Reader }

func (heldPlaintext) Close() error { return nil }
