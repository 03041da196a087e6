package similar

import (
	"io"
	"os"

	"github.com/imgfs/imgfs/embed"
	"github.com/imgfs/imgfs/fs/core"
)

// Vault is what the near-duplicate layer needs of the FUSE-free core. *core.FS provides it
// through CoreVault; unit tests use a fake.
type Vault interface {
	PutAux(table string, key, value []byte) error
	GetAux(table string, key []byte) ([]byte, error)
	DeleteAux(table string, key []byte) error
	ForEachAux(table string, fn func(key, value []byte) error) error
	ContentID(ino core.Ino) (id [32]byte, ok bool, err error)
	ForEachFile(fn func(ino core.Ino, id [32]byte) error) error
	Path(ino core.Ino) (string, error)
	Resolve(path string) (core.Ino, error)
	Lookup(parent core.Ino, name string) (core.Attr, error)
	GetAttr(ino core.Ino) (core.Attr, error)
	ReadDir(ino core.Ino) ([]core.DirEntry, error)
	// OpenReader opens ino's current content for reading.
	OpenReader(ino core.Ino) (ReaderAtCloser, int64, error)
}

// ReaderAtCloser is an open file.
type ReaderAtCloser interface {
	io.ReaderAt
	io.Closer
}

// CoreVault adapts *core.FS.
func CoreVault(c *core.FS) Vault { return coreVault{c} }

type coreVault struct{ *core.FS }

type coreReader struct{ h *core.Handle }

func (r coreReader) ReadAt(p []byte, off int64) (int, error) { return r.h.ReadAt(p, off) }
func (r coreReader) Close() error                            { return r.h.Release() }

func (c coreVault) OpenReader(ino core.Ino) (ReaderAtCloser, int64, error) {
	a, err := c.GetAttr(ino)
	if err != nil {
		return nil, 0, err
	}
	h, err := c.OpenFile(ino, os.O_RDONLY)
	if err != nil {
		return nil, 0, err
	}
	return coreReader{h}, a.Size, nil
}

// Embedder computes embeddings; *embed.Model provides it through ModelEmbedder.
type Embedder interface {
	// ID names the model and recipe; embeddings of different IDs are not comparable.
	ID() string
	Dim() int
	// EmbedReader decodes an image and embeds it. An error means "not an image we can use".
	EmbedReader(r io.Reader) ([]float32, error)
}

// ModelEmbedder adapts an embed.Model.
func ModelEmbedder(m *embed.Model) Embedder { return modelEmbedder{m} }

type modelEmbedder struct{ m *embed.Model }

func (e modelEmbedder) ID() string { return e.m.ID() }
func (e modelEmbedder) Dim() int   { return e.m.Dim() }
func (e modelEmbedder) EmbedReader(r io.Reader) ([]float32, error) {
	emb, err := embed.EmbedFile(e.m, r)
	if err != nil {
		return nil, err
	}
	return emb.Vector, nil
}

// LoadDefaultModel finds and loads the default embedding model (embed.LocateModel).
func LoadDefaultModel() (Embedder, error) {
	p, err := embed.LocateModel(embed.DefaultModelName)
	if err != nil {
		return nil, err
	}
	m, err := embed.Load(p)
	if err != nil {
		return nil, err
	}
	return ModelEmbedder(m), nil
}
