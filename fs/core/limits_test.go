package core

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
)

// T40 (unit level): a full spool gives ENOSPC, never a short silent write; acknowledged
// files stay intact; writes work again once sealing frees the spool.
func TestSpoolLimitENOSPC(t *testing.T) {
	e := newEnv(t)
	e.opts.SpoolLimit = 1 << 20
	fs := &failStore{Store: e.store}
	e.store = fs
	f := e.open()
	fs.fail.Store(true) // nothing can be sealed: the spool only grows
	a := randBytes(600_000)
	writeFile(t, f, "/a", a)
	_, h, err := f.Create(RootIno, "b", 0o644, true)
	ok(t, err)
	var werr error
	written := 0
	for off := 0; off < 1<<20; off += 64 << 10 {
		n, err := h.WriteAt(randBytes(64<<10), int64(off))
		if err != nil {
			werr = err
			if n != 0 {
				t.Fatalf("failed write reported %d bytes", n)
			}
			break
		}
		written += n
	}
	wantErr(t, werr, syscall.ENOSPC)
	if written == 0 || written >= 1<<20 {
		t.Fatalf("wrote %d bytes before ENOSPC", written)
	}
	st := must(f.Statfs())
	if st.Bavail > 16 {
		t.Fatalf("statfs shows %d free blocks on a full spool", st.Bavail)
	}
	// Truncating the open file frees its spool space again.
	ok(t, h.Release())
	ok(t, f.Remove(RootIno, "b", false))
	fs.fail.Store(false)
	ok(t, f.Sync(ctx())) // /a sealed, its spool deleted
	if f.spoolUsed.Load() != 0 {
		t.Fatalf("spool accounting %d after sync", f.spoolUsed.Load())
	}
	big := randBytes(900_000)
	writeFile(t, f, "/c", big)
	if got := readFile(t, f, "/a"); !bytes.Equal(got, a) {
		t.Fatal("/a damaged")
	}
	if got := readFile(t, f, "/c"); !bytes.Equal(got, big) {
		t.Fatal("/c damaged")
	}
	// Copy-on-write of a sealed file copies nothing (the spool is an overlay): one-byte
	// edits of two sealed files take one block each, and fit.
	ok(t, f.Sync(ctx()))
	h2 := must(f.OpenFile(must(f.Resolve("/c")), os.O_RDWR))
	must(h2.WriteAt([]byte("x"), 0))
	h3 := must(f.OpenFile(must(f.Resolve("/a")), os.O_RDWR))
	must(h3.WriteAt([]byte("x"), 0))
	if used := f.spoolUsed.Load(); used > 2*(spoolSlot+8192) {
		t.Errorf("two one-byte edits take %d bytes of spool", used)
	}
	ok(t, h2.Release())
	ok(t, h3.Release())
}

// stallStore holds every content Put until its context ends, so a seal stays in flight.
type stallStore struct {
	backend.Store
	stalled atomic.Int64 // Puts waiting now
}

func (s *stallStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if !strings.HasPrefix(name, "c/") {
		return s.Store.Put(ctx, name, r, size)
	}
	s.stalled.Add(1)
	defer s.stalled.Add(-1)
	<-ctx.Done()
	return ctx.Err()
}

// Removing a file whose spool is being sealed stops that seal: its open spool file would
// hold the disk space until the seal ended (on a full disk: writes fail until then).
func TestRemoveStopsSeal(t *testing.T) {
	e := newEnv(t)
	ss := &stallStore{Store: e.store}
	e.store = ss
	f := e.open()
	writeFile(t, f, "/x", randBytes(300_000))
	waitFor(t, "a seal stalled in Put", func() bool { return ss.stalled.Load() > 0 })
	ok(t, f.Remove(RootIno, "x", false))
	f.mu.Lock()
	err := f.commitLocked() // the removal commits: the spool is deleted
	f.mu.Unlock()
	ok(t, err)
	waitFor(t, "the seal stopped", func() bool {
		f.sealMu.Lock()
		defer f.sealMu.Unlock()
		return len(f.sealing) == 0 && ss.stalled.Load() == 0
	})
	if n := usedSpoolFiles(t, f); n != 0 {
		t.Fatalf("%d spool files left after the removal", n)
	}
}

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20 s: %s", what)
		}
	}
}
