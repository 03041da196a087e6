package core

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/faulty"
	"github.com/imgfs/imgfs/backend/retry"
	"github.com/imgfs/imgfs/dedup"
)

// resetStore fails the first n content Puts after reading part of the body, like a
// connection reset in the middle of an upload.
type resetStore struct {
	backend.Store
	n atomic.Int32
}

func (s *resetStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if strings.HasPrefix(name, "c/") && s.n.Add(-1) >= 0 {
		io.CopyN(io.Discard, r, size/2)
		return backend.Transient(fmt.Errorf("put %s: %w", name, syscall.ECONNRESET))
	}
	return s.Store.Put(ctx, name, r, size)
}

func faultEnv(t *testing.T) (*env, *faulty.Store, backend.Store) {
	e, fs, inner := faultEnvNoRetry(t)
	e.store = retry.New(fs, retry.Options{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	return e, fs, inner
}

// faultEnvNoRetry is faultEnv without the retry decorator: the core talks to the faulty
// store directly.
func faultEnvNoRetry(t *testing.T) (*env, *faulty.Store, backend.Store) {
	e := newEnv(t)
	e.opts.CommitDelay = 1 << 40 // only Fsync/Sync commit
	inner := e.store
	fs := faulty.New(inner)
	e.store = fs
	return e, fs, inner
}

// T38: the store saved r/<seq> but the answer was lost; the retry meets ErrExist. The root
// is read back: it is ours, so the commit succeeds and later fsyncs keep working.
func TestFaultRootAnswerLost(t *testing.T) {
	e, fs, _ := faultEnv(t)
	f := e.open()
	for i := 0; i < 3; i++ {
		fs.Add(faulty.Fault{Op: faulty.OpPut, NamePrefix: "r/", Times: 1, Kind: faulty.LostAck})
		fs.Add(faulty.Fault{Op: faulty.OpPut, NamePrefix: "m/", Times: 1, Kind: faulty.LostAck})
		_, h, err := f.Create(RootIno, fmt.Sprintf("f%d", i), 0o644, true)
		ok(t, err)
		must(h.WriteAt([]byte(strings.Repeat("x", 1000+i)), 0))
		ok(t, h.Fsync(ctx()))
		ok(t, h.Release())
	}
	if fs.Fired(faulty.LostAck) < 6 {
		t.Fatalf("lost answers fired %d times, want 6", fs.Fired(faulty.LostAck))
	}
	ok(t, f.Sync(ctx()))
	ok(t, f.Close())

	e.cache = t.TempDir() // a second machine sees every file
	f = e.open()
	for i := 0; i < 3; i++ {
		if got := readFile(t, f, fmt.Sprintf("/f%d", i)); len(got) != 1000+i {
			t.Fatalf("f%d: %d bytes", i, len(got))
		}
	}
}

// One retry layer (backend/retry; the core does not retry on top of it): a content Put that
// keeps failing is tried MaxAttempts times, not MaxAttempts times the core's own attempts,
// and the Fsync reports EIO.
func TestFaultOneRetryLayer(t *testing.T) {
	e, fs, _ := faultEnvNoRetry(t)
	e.store = retry.New(fs, retry.Options{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	f := e.open()
	fs.Add(faulty.Fault{Op: faulty.OpPut, NamePrefix: "c/", Kind: faulty.Error})
	_, _, err := f.sealChunk(ctx(), randBytes(10_000)) // one upload, as a sealer does it
	wantErr(t, err, syscall.EIO)
	if n := fs.Fired(faulty.Error); n != 3 {
		t.Fatalf("the content Put was tried %d times, want 3 (one retry layer)", n)
	}
	fs.Clear()
	_, h, err := f.Create(RootIno, "a", 0o644, true)
	ok(t, err)
	must(h.WriteAt(randBytes(10_000), 0))
	ok(t, h.Fsync(ctx()))
	ok(t, h.Release())
}

// A Put that failed for good (every answer lost) but landed: the next commit finds its own
// earlier root at that number and continues after it instead of reporting a conflict.
func TestFaultRootLandedAfterGivingUp(t *testing.T) {
	e, fs, _ := faultEnvNoRetry(t)
	f := e.open()
	fs.Add(faulty.Fault{Op: faulty.OpPut, NamePrefix: "r/", Times: 1, Kind: faulty.LostAck})
	fs.Add(faulty.Fault{Op: faulty.OpGet, NamePrefix: "r/", Kind: faulty.Error})
	_, h, err := f.Create(RootIno, "a", 0o644, true)
	ok(t, err)
	must(h.WriteAt([]byte("hello"), 0))
	wantErr(t, h.Fsync(ctx()), syscall.EIO)
	fs.Clear()
	must(h.WriteAt([]byte("hello again"), 0))
	ok(t, h.Fsync(ctx()))
	ok(t, h.Release())
	ok(t, f.Close())
	e.cache = t.TempDir()
	f = e.open()
	if got := readFile(t, f, "/a"); string(got) != "hello again" {
		t.Fatalf("got %q", got)
	}
}

// A root at our number that does not open (not a root of this vault) is refused with EIO
// when the commit tries to merge it.
func TestFaultRootRealConflict(t *testing.T) {
	e, _, inner := faultEnv(t)
	f := e.open()
	writeFile(t, f, "/a", []byte("x"))
	next := f.anchorSeq() + 1
	obj, _, err := dedup.SealRoot(e.keys.MetaKey, next, []byte("someone else"))
	ok(t, err)
	ok(t, inner.Put(ctx(), dedup.RootName(next), bytes.NewReader(obj), int64(len(obj))))
	err = f.Sync(ctx())
	wantErr(t, err, syscall.EIO)
	if !strings.Contains(err.Error(), "root 2") {
		t.Fatalf("error does not name the root: %v", err)
	}
}

// T38: a connection reset in the middle of a content upload: the retry decorator rewinds
// the body (it is seekable) and tries again.
func TestFaultContentReset(t *testing.T) {
	e := newEnv(t)
	e.opts.CommitDelay = 1 << 40
	rs := &resetStore{Store: e.store}
	rs.n.Store(2)
	e.store = retry.New(rs, retry.Options{BaseDelay: time.Millisecond})
	f := e.open()
	data := randBytes(300_000)
	_, h, err := f.Create(RootIno, "a", 0o644, true)
	ok(t, err)
	must(h.WriteAt(data, 0))
	ok(t, h.Fsync(ctx()))
	ok(t, h.Release())
	if rs.n.Load() >= 0 {
		t.Fatal("the resets did not fire")
	}
	ok(t, f.Close())
	e.cache = t.TempDir()
	f = e.open()
	if got := readFile(t, f, "/a"); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
}

// Lost answer of a content Put is a dedup hit on the decorator's retry.
func TestFaultContentAnswerLost(t *testing.T) {
	e, fs, _ := faultEnv(t)
	f := e.open()
	fs.Add(faulty.Fault{Op: faulty.OpPut, NamePrefix: "c/", Times: 1, Kind: faulty.LostAck})
	data := randBytes(50_000)
	_, h, err := f.Create(RootIno, "a", 0o644, true)
	ok(t, err)
	must(h.WriteAt(data, 0))
	ok(t, h.Fsync(ctx()))
	ok(t, h.Release())
	if fs.Fired(faulty.LostAck) != 1 {
		t.Fatal("the fault did not fire")
	}
	if got := readFile(t, f, "/a"); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
}

// Store down: Fsync fails with EIO, names and attributes still work, nothing is lost, and
// the first Fsync after the store comes back succeeds.
func TestFaultStoreDown(t *testing.T) {
	e, fs, _ := faultEnv(t)
	f := e.open()
	writeFile(t, f, "/old", []byte("old"))
	ok(t, f.Sync(ctx()))
	fs.Add(faulty.Fault{Kind: faulty.Error})
	data := randBytes(20_000)
	a, h, err := f.Create(RootIno, "new", 0o644, true)
	ok(t, err)
	must(h.WriteAt(data, 0))
	wantErr(t, h.Fsync(ctx()), syscall.EIO)
	wantErr(t, f.Sync(ctx()), syscall.EIO)
	// ls and stat keep working.
	ents, err := f.ReadDir(RootIno)
	ok(t, err)
	if len(ents) < 2 {
		t.Fatalf("readdir: %v", ents)
	}
	st, err := f.Lookup(RootIno, "new")
	ok(t, err)
	if st.Ino != a.Ino || st.Size != int64(len(data)) {
		t.Fatalf("stat: %+v", st)
	}
	if got := readAllHandle(t, h); !bytes.Equal(got, data) {
		t.Fatal("read during the outage returned wrong bytes")
	}
	fs.Clear()
	ok(t, h.Fsync(ctx()))
	ok(t, h.Release())
	ok(t, f.Close())
	e.cache = t.TempDir()
	f = e.open()
	if got := readFile(t, f, "/new"); !bytes.Equal(got, data) {
		t.Fatal("content differs after the outage")
	}
	if got := readFile(t, f, "/old"); string(got) != "old" {
		t.Fatal("old content differs")
	}
}
