package similar

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/imgfs/imgfs/fs/core"
)

// failingTree is a vault whose directory operations fail as a store's I/O error does.
type failingTree struct{ *fakeVault }

func (failingTree) Lookup(core.Ino, string) (core.Attr, error) {
	return core.Attr{}, fmt.Errorf("core: lookup: %w", syscall.EIO)
}

func (failingTree) ReadDir(core.Ino) ([]core.DirEntry, error) {
	return nil, fmt.Errorf("core: readdir: %w", syscall.EIO)
}

// TestTreeErrno: the .similar/ tree answers through the FUSE boundary's one errno mapping
// (fs/fuseerr): a missing name is ENOENT, a failing store EIO (not ENOENT, which would tell
// programs the directory is gone).
func TestTreeErrno(t *testing.T) {
	ctx := context.Background()
	lookup := func(n fusefs.Node, name string) error {
		_, err := n.(fusefs.NodeRequestLookuper).Lookup(ctx, &fuse.LookupRequest{Name: name}, &fuse.LookupResponse{})
		return err
	}
	ok := start(t, newFakeVault(), &fakeEmbedder{id: "fake/1"})
	if err := lookup(ok.Node(), "nope"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("lookup of a missing name: %v, want ENOENT", err)
	}

	x, err := New(Config{Embedder: &fakeEmbedder{id: "fake/1"}, Logger: quiet(), Workers: 1, Threshold: fakeThreshold})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Start(failingTree{newFakeVault()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Close)
	<-x.GraphReady()
	if err := lookup(x.Node(), "2024"); err != syscall.EIO {
		t.Fatalf("lookup on a failing store: %v, want a bare EIO", err)
	}
	if _, err := x.Node().(fusefs.HandleReadDirAller).ReadDirAll(ctx); err != syscall.EIO {
		t.Fatalf("readdir on a failing store: %v, want a bare EIO", err)
	}
}
