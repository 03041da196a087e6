package fs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/imgfs/imgfs/fs/core"
	"github.com/imgfs/imgfs/fs/similar"
)

// oneDirVault is a vault with an empty root and a file "a.jpg" (no content: nothing to
// index), whose directory operations fail with fail when it is set, as a store's I/O
// error does.
type oneDirVault struct{ fail error }

func (oneDirVault) PutAux(string, []byte, []byte) error { return nil }
func (oneDirVault) GetAux(string, []byte) ([]byte, error) {
	return nil, syscall.ENOENT
}
func (oneDirVault) DeleteAux(string, []byte) error                   { return nil }
func (oneDirVault) ForEachAux(string, func(k, v []byte) error) error { return nil }
func (oneDirVault) ContentID(core.Ino) ([32]byte, bool, error)       { return [32]byte{}, false, nil }
func (oneDirVault) ForEachFile(func(core.Ino, [32]byte) error) error { return nil }
func (oneDirVault) Path(core.Ino) (string, error)                    { return "/a.jpg", nil }
func (oneDirVault) Resolve(string) (core.Ino, error)                 { return 2, nil }
func (oneDirVault) GetAttr(ino core.Ino) (core.Attr, error)          { return core.Attr{Ino: ino}, nil }
func (oneDirVault) OpenReader(core.Ino) (similar.ReaderAtCloser, int64, error) {
	return nil, 0, syscall.EIO
}

func (v oneDirVault) Lookup(_ core.Ino, name string) (core.Attr, error) {
	if v.fail != nil {
		return core.Attr{}, fmt.Errorf("core: lookup: %w", v.fail)
	}
	if name != "a.jpg" {
		return core.Attr{}, fmt.Errorf("core: lookup: %w", syscall.ENOENT)
	}
	return core.Attr{Ino: 2, Mode: 0o644}, nil
}

func (v oneDirVault) ReadDir(core.Ino) ([]core.DirEntry, error) {
	if v.fail != nil {
		return nil, fmt.Errorf("core: readdir: %w", v.fail)
	}
	return []core.DirEntry{{Name: "a.jpg", Ino: 2, Mode: 0o644}}, nil
}

type noEmbedder struct{}

func (noEmbedder) ID() string                               { return "none/1" }
func (noEmbedder) Dim() int                                 { return 8 }
func (noEmbedder) EmbedReader(io.Reader) ([]float32, error) { return nil, io.ErrUnexpectedEOF }

func similarRoot(t *testing.T, v similar.Vault) fusefs.Node {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	x, err := similar.New(similar.Config{Embedder: noEmbedder{}, Logger: log, Workers: 1, Threshold: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Start(v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Close)
	<-x.GraphReady()
	tree := SimilarTree(x, log)
	if tree.Node() != tree.Node() {
		t.Fatal("Node() is not stable")
	}
	return tree.Node()
}

// TestSimilarNodes: the .similar/ nodes answer with the indexer's validity, show a file
// without matches as an empty read-only directory, and map errors through the boundary's
// one errno mapping (fs/fuseerr): a missing name is ENOENT, a failing store EIO (not
// ENOENT, which would tell programs the directory is gone).
func TestSimilarNodes(t *testing.T) {
	ctx := context.Background()
	lookup := func(n fusefs.Node, name string) (fusefs.Node, error) {
		var resp fuse.LookupResponse
		c, err := n.(fusefs.NodeRequestLookuper).Lookup(ctx, &fuse.LookupRequest{Name: name}, &resp)
		if resp.EntryValid != time.Second {
			t.Fatalf("EntryValid = %v", resp.EntryValid)
		}
		return c, err
	}
	root := similarRoot(t, oneDirVault{})
	if _, err := lookup(root, "nope"); err != syscall.ENOENT {
		t.Fatalf("lookup of a missing name: %v, want a bare ENOENT", err)
	}
	if ents, err := root.(fusefs.HandleReadDirAller).ReadDirAll(ctx); err != nil || len(ents) != 0 {
		t.Fatalf(".similar/ of a vault without matches = %v, %v", ents, err)
	}
	md, err := lookup(root, "a.jpg")
	if err != nil {
		t.Fatal(err)
	}
	var a fuse.Attr
	if err := md.Attr(ctx, &a); err != nil || !a.Mode.IsDir() || a.Mode.Perm() != 0o555 || a.Valid != time.Second {
		t.Fatalf("match directory: %v %v valid %v", err, a.Mode, a.Valid)
	}
	if ents, err := md.(fusefs.HandleReadDirAller).ReadDirAll(ctx); err != nil || len(ents) != 0 {
		t.Fatalf("matches of a lone file = %v, %v", ents, err)
	}
	var x fuse.GetxattrResponse
	if err := md.(fusefs.NodeGetxattrer).Getxattr(ctx, &fuse.GetxattrRequest{Name: "user.other"}, &x); err != fuse.ErrNoXattr {
		t.Fatalf("other xattr: %v", err)
	}
	if err := md.(fusefs.NodeGetxattrer).Getxattr(ctx, &fuse.GetxattrRequest{Name: similar.XattrSimilarity}, &x); err != nil || len(x.Xattr) != 0 {
		t.Fatalf("scores of a lone file: %q, %v", x.Xattr, err)
	}

	failing := similarRoot(t, oneDirVault{fail: syscall.EIO})
	if _, err := lookup(failing, "a.jpg"); err != syscall.EIO {
		t.Fatalf("lookup on a failing store: %v, want a bare EIO", err)
	}
	if _, err := failing.(fusefs.HandleReadDirAller).ReadDirAll(ctx); err != syscall.EIO {
		t.Fatalf("readdir on a failing store: %v, want a bare EIO", err)
	}
}
