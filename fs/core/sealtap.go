package core

import "github.com/imgfs/imgfs/dedup"

// PlaintextObserver is offered the plaintext of files as sealing reads it (Options.Plaintext),
// so that what consumes new content (the near-duplicate indexer, docs/similar.md) does not
// read and decrypt it again a moment later.
type PlaintextObserver interface {
	// WantPlaintext is asked when sealing starts to read a file from its first byte: size is
	// the file's size, head its first bytes (up to 16). False: nothing is collected. It runs
	// on the sealing path and must be quick.
	WantPlaintext(ino Ino, size int64, head []byte) bool
	// Plaintext hands over ino's whole content, sealed as content ID id (ContentID), in a
	// buffer that is now the observer's. It runs on the sealing path before the inode takes
	// the content (the swap may still lose to a newer write: id then names no file).
	Plaintext(ino Ino, id [32]byte, b []byte)
}

// sealTap collects one file's plaintext as rechunk reads it, chunk by chunk, when the
// observer wants it. A file whose chunks are partly kept from its base (an edit of a large
// file) is not read whole, so nothing is offered.
type sealTap struct {
	obs PlaintextObserver
	rec pendingRec
	buf []byte
	off bool // declined, or a gap: nothing to offer
}

func (f *FS) newSealTap(rec pendingRec) *sealTap {
	if f.opts.Plaintext == nil || rec.Size <= 0 {
		return nil
	}
	return &sealTap{obs: f.opts.Plaintext, rec: rec}
}

// add records chunk b, read at pos (chunks come in order).
func (t *sealTap) add(pos int64, b []byte) {
	switch {
	case t == nil || t.off:
		return
	case pos != int64(len(t.buf)):
		t.off, t.buf = true, nil
		return
	case pos == 0:
		if !t.obs.WantPlaintext(t.rec.Ino, t.rec.Size, b[:min(16, len(b))]) {
			t.off = true
			return
		}
		t.buf = make([]byte, 0, t.rec.Size)
	}
	t.buf = append(t.buf, b...)
}

// offer hands the plaintext to the observer if the whole file passed through add.
func (t *sealTap) offer(c dedup.Content) {
	if t == nil || t.off || int64(len(t.buf)) != t.rec.Size {
		return
	}
	t.obs.Plaintext(t.rec.Ino, c.ID(), t.buf)
}
