package core

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/imgfs/imgfs/backend"
)

// gateStore holds every content upload ("c/...") while closed, so a test can commit roots
// while a seal is under way.
type gateStore struct {
	backend.Store
	mu     sync.Mutex
	closed bool
	open   chan struct{}
}

func newGateStore(s backend.Store) *gateStore { return &gateStore{Store: s} }

func (g *gateStore) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed, g.open = true, make(chan struct{})
	}
}

func (g *gateStore) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		g.closed = false
		close(g.open)
	}
}

func (g *gateStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if strings.HasPrefix(name, "c/") {
		g.mu.Lock()
		ch := g.open
		closed := g.closed
		g.mu.Unlock()
		if closed {
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return g.Store.Put(ctx, name, r, size)
}

// A root holds only versions some device acknowledged (close, fsync) or the last committed
// one (docs/core.md, "Several devices"): another device never reads the empty state of an
// open(O_TRUNC) (the kernel sends it as a truncate to 0 before the writes) or of a new file
// whose content is not sealed yet, whatever roots the writer commits meanwhile.
func TestRootHoldsOnlyAcknowledgedVersions(t *testing.T) {
	e := newEnv(t)
	e.opts.CommitDelay = 1 << 40
	e.opts.RefreshInterval = -1
	gate := newGateStore(e.store)
	t.Cleanup(gate.release)
	da := e.device("a")
	da.store = gate
	a := da.open()
	v1 := randBytes(300_000)
	writeFile(t, a, "/f.jpg", v1)
	ok(t, a.Sync(ctx()))
	b := e.device("b").open()
	seen := func(path string, want []byte, what string) {
		t.Helper()
		ok(t, b.Refresh(ctx()))
		if want == nil {
			if _, err := b.Resolve(path); err == nil {
				t.Fatalf("%s: device b sees %s (%d bytes), which no device acknowledged", what, path, len(readFile(t, b, path)))
			}
			return
		}
		if got := readFile(t, b, path); !bytes.Equal(got, want) {
			t.Fatalf("%s: device b reads %s as %d bytes, want the acknowledged %d", what, path, len(got), len(want))
		}
	}
	seen("/f.jpg", v1, "start")

	// The kernel's open(O_TRUNC): OPEN, then SETATTR size 0, then the writes.
	ino := must(a.Resolve("/f.jpg"))
	h := must(a.OpenFile(ino, os.O_WRONLY))
	zero := int64(0)
	must(a.SetAttr(ino, SetAttrRequest{Size: &zero}))
	v2 := randBytes(250_000)
	must(h.WriteAt(v2[:100_000], 0))
	ok(t, a.Sync(ctx())) // seals the truncate's empty spool and writes a root
	seen("/f.jpg", v1, "after a sync while the O_TRUNC writer is open")
	must(h.WriteAt(v2[100_000:], 100_000))
	gate.close()
	ok(t, h.Flush()) // close: v2 is acknowledged, its seal waits at the gate
	ok(t, h.Release())
	ok(t, a.commitNow(ctx()))
	seen("/f.jpg", v1, "after a commit before v2's seal")

	// A new file: not in a root before its content is sealed.
	_, hn, err := a.CreateFlags(RootIno, "new.jpg", 0o644, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	ok(t, err)
	vn := randBytes(120_000)
	must(hn.WriteAt(vn, 0))
	ok(t, a.commitNow(ctx()))
	seen("/new.jpg", nil, "a new file open for writing")
	ok(t, hn.Flush())
	ok(t, hn.Release())
	ok(t, a.commitNow(ctx()))
	seen("/new.jpg", nil, "a new file closed, its seal waiting")

	gate.release()
	ok(t, a.Sync(ctx()))
	seen("/f.jpg", v2, "after the seal")
	seen("/new.jpg", vn, "after the seal")

	// An empty file created and closed is a version (touch, cp of an empty file).
	_, he, err := a.CreateFlags(RootIno, "empty", 0o644, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	ok(t, err)
	ok(t, he.Flush())
	ok(t, he.Release())
	ok(t, a.Sync(ctx()))
	seen("/empty", []byte{}, "an empty file closed")
	// O_TRUNC and close with no writes: the empty version is acknowledged.
	h = must(a.OpenFile(must(a.Resolve("/new.jpg")), os.O_WRONLY))
	must(a.SetAttr(must(a.Resolve("/new.jpg")), SetAttrRequest{Size: &zero}))
	ok(t, h.Flush())
	ok(t, h.Release())
	ok(t, a.Sync(ctx()))
	seen("/new.jpg", []byte{}, "O_TRUNC and close")

	// fsync acknowledges the file's bytes while it stays open.
	h = must(a.OpenFile(ino, os.O_WRONLY))
	must(a.SetAttr(ino, SetAttrRequest{Size: &zero}))
	v3 := randBytes(90_000)
	must(h.WriteAt(v3, 0))
	ok(t, h.Fsync(ctx()))
	seen("/f.jpg", v3, "fsync of an open file")
	must(a.SetAttr(ino, SetAttrRequest{Size: &zero})) // ftruncate(fd, 0) while open
	ok(t, a.Sync(ctx()))
	seen("/f.jpg", v3, "a truncate while open")
	must(h.WriteAt([]byte("v4"), 0))
	ok(t, h.Flush())
	ok(t, h.Release())
	ok(t, a.Sync(ctx()))
	seen("/f.jpg", []byte("v4"), "closed again")

	// A fresh cache reads the same.
	ok(t, a.Close())
	c := e.device("c").open()
	for p, want := range map[string][]byte{"/f.jpg": []byte("v4"), "/new.jpg": {}, "/empty": {}} {
		if got := readFile(t, c, p); !bytes.Equal(got, want) {
			t.Fatalf("fresh cache reads %s as %d bytes, want %d", p, len(got), len(want))
		}
	}
}

// The same across a merge and a kill -9: a device that merges another device's version of
// a file it is rewriting shows the other version (never the empty one) until its own close,
// then both are kept (one as a conflict copy); a closed file whose seal a kill -9
// interrupted reaches the root after recovery.
func TestHeldFileAcrossMergeAndCrash(t *testing.T) {
	e := newEnv(t)
	e.opts.CommitDelay = 1 << 40
	e.opts.RefreshInterval = -1
	gate := newGateStore(e.store)
	t.Cleanup(gate.release)
	da := e.device("a")
	da.store = gate
	a := da.open()
	v1 := randBytes(200_000)
	writeFile(t, a, "/f.jpg", v1)
	ok(t, a.Sync(ctx()))
	b := e.device("b").open()

	ino := must(a.Resolve("/f.jpg"))
	h := must(a.OpenFile(ino, os.O_WRONLY))
	zero := int64(0)
	must(a.SetAttr(ino, SetAttrRequest{Size: &zero}))
	va := randBytes(150_000)
	must(h.WriteAt(va, 0))
	vb := randBytes(170_000)
	writeFile(t, b, "/f.jpg", vb)
	ok(t, b.Sync(ctx()))
	ok(t, a.Sync(ctx())) // merges b's root, then commits
	ok(t, b.Refresh(ctx()))
	for _, de := range must(b.ReadDir(RootIno)) {
		got := readFile(t, b, "/"+de.Name)
		if !bytes.Equal(got, v1) && !bytes.Equal(got, vb) {
			t.Fatalf("during a's rewrite, b reads %s as %d bytes: not a version", de.Name, len(got))
		}
	}
	ok(t, h.Flush())
	ok(t, h.Release())
	ok(t, a.Sync(ctx()))
	ok(t, b.Refresh(ctx()))
	found := map[string]bool{}
	for _, de := range must(b.ReadDir(RootIno)) {
		got := readFile(t, b, "/"+de.Name)
		switch {
		case bytes.Equal(got, va):
			found["a"] = true
		case bytes.Equal(got, vb):
			found["b"] = true
		default:
			t.Fatalf("after a's close, b reads %s as %d bytes: not a version", de.Name, len(got))
		}
	}
	if !found["a"] || !found["b"] {
		t.Fatalf("after the merge: a's version kept %v, b's %v", found["a"], found["b"])
	}

	// kill -9 while a closed file's seal waits: recovery seals it, the root gets it.
	gate.close()
	vk := randBytes(90_000)
	_, hk, err := a.CreateFlags(RootIno, "k.jpg", 0o644, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	ok(t, err)
	must(hk.WriteAt(vk, 0))
	ok(t, hk.Flush())
	ok(t, a.commitNow(ctx()))
	a.crash()
	gate.release()
	ok(t, b.Refresh(ctx()))
	if _, err := b.Resolve("/k.jpg"); err == nil {
		t.Fatal("b sees k.jpg before its content was stored")
	}
	a = da.open()
	ok(t, a.Sync(ctx()))
	ok(t, b.Refresh(ctx()))
	if got := readFile(t, b, "/k.jpg"); !bytes.Equal(got, vk) {
		t.Fatalf("after a's recovery b reads k.jpg as %d bytes, want %d", len(got), len(vk))
	}
}
