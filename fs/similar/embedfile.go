package similar

import (
	"bytes"
	"fmt"
	"io"

	"github.com/imgfs/imgfs/embed/index"
	"github.com/imgfs/imgfs/fs/core"
)

type notImageError struct {
	msg   string
	image bool // the content starts like an image format
}

func (e notImageError) Error() string { return "not an image: " + e.msg }

// embedIno embeds ino's content, cid: its entry, with the mirror vector and the Local
// descriptors when the Embedder computes them (else nil). It embeds from the plaintext
// sealing handed over (handoff.go) when that is held, else it reads the file.
func (x *Indexer) embedIno(ino core.Ino, cid [32]byte) (index.Entry, error) {
	var r ReaderAtCloser
	var size int64
	if b, ok := x.takePlaintext(cid); ok {
		r, size = heldPlaintext{bytes.NewReader(b)}, int64(len(b))
	} else {
		var err error
		if r, size, err = x.v.OpenReader(ino); err != nil {
			return index.Entry{}, err
		}
	}
	defer r.Close()
	if size > MaxFileSize {
		return index.Entry{}, notImageError{msg: fmt.Sprintf("%d bytes is over the %d-byte limit", size, MaxFileSize)}
	}
	var head [16]byte
	n, err := r.ReadAt(head[:], 0)
	if n == 0 && err != nil && err != io.EOF {
		return index.Entry{}, err
	}
	if !looksLikeImage(head[:n]) {
		return index.Entry{}, notImageError{msg: reasonUnknownFormat}
	}
	er := &errReader{r: io.NewSectionReader(r, 0, size)}
	ent, err := x.embedEntry(er)
	if er.err != nil && er.err != io.EOF {
		return index.Entry{}, er.err // a read error, not the image's fault
	}
	if err != nil {
		return index.Entry{}, notImageError{msg: err.Error(), image: true}
	}
	return ent, nil
}

// errReader remembers the underlying reader's error, to tell read failures from bad images.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// looksLikeImage checks the magic numbers of the formats embed decodes, so the indexer does
// not read whole non-image files.
func looksLikeImage(h []byte) bool {
	has := func(p string) bool { return len(h) >= len(p) && string(h[:len(p)]) == p }
	switch {
	case has("\xff\xd8\xff"), has("\x89PNG\r\n\x1a\n"), has("GIF87a"), has("GIF89a"),
		has("BM"), has("II*\x00"), has("MM\x00*"):
		return true
	case has("RIFF") && len(h) >= 12 && string(h[8:12]) == "WEBP":
		return true
	}
	return false
}
