package local_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/backend/retry"
	"github.com/imgfs/imgfs/backend/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) backend.Store {
		s, err := local.Open(filepath.Join(t.TempDir(), "store"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestOpenCreates0700(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "store")
	s, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("store dir mode %v, want 0700", fi.Mode().Perm())
	}
	if s.Dir() != dir {
		t.Fatalf("Dir() = %s", s.Dir())
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := local.Open(f); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
}

// Objects land as plain files under their names (the leak scanners read them there).
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	s, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := storetest.Name("c", "layout")
	storetest.MustPut(t, s, name, []byte("hello"))
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil || string(b) != "hello" {
		t.Fatalf("object file: %q %v", b, err)
	}
	p, _ := s.Path(name)
	if p != filepath.Join(dir, filepath.FromSlash(name)) {
		t.Fatalf("Path = %s", p)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, ".tmp"))
	if len(ents) != 0 {
		t.Fatalf("temp files left after Put: %d", len(ents))
	}
}

// Temp files of crashed writers are removed at Open; those of a live writer (flocked) stay.
func TestTempCleanup(t *testing.T) {
	dir := t.TempDir()
	if _, err := local.Open(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, ".tmp", "deadbeef")
	if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, ".tmp", "cafef00d")
	f, err := os.Create(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temp file survived Open: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("live writer's temp file was removed: %v", err)
	}
}

// Two stores on one directory (two processes) race on one name: link(2) decides.
func TestTwoHandlesRace(t *testing.T) {
	dir := t.TempDir()
	a, _ := local.Open(dir)
	b, _ := local.Open(dir)
	name := storetest.Name("c", "two")
	ctx := context.Background()
	errA := a.Put(ctx, name, bytes.NewReader([]byte("A")), 1)
	errB := b.Put(ctx, name, bytes.NewReader([]byte("B")), 1)
	if errA != nil || !errors.Is(errB, backend.ErrExist) {
		t.Fatalf("a: %v, b: %v", errA, errB)
	}
}

func TestErrorClasses(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores permission bits; use a read-only bind instead where possible.
		t.Log("running as root: permission test uses an object-vs-folder clash instead")
	}
	dir := t.TempDir()
	s, _ := local.Open(dir)
	ctx := context.Background()
	storetest.MustPut(t, s, "c/ab", []byte("x")) // a file where a fan-out folder would go
	err := s.Put(ctx, "c/ab/cd", bytes.NewReader([]byte("y")), 1)
	if err == nil || !backend.IsPermanent(err) {
		t.Fatalf("Put below an object: %v, want permanent", err)
	}
	if _, err := s.Stat(ctx, "c/ab/cd"); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Stat below an object: %v", err)
	}
	// A full disk is permanent: /dev/full is the classic source of ENOSPC, but link(2) across
	// file systems is impossible, so check the classifier through a store on a tiny tmpfs when
	// one is available (root only).
	if _, err := s.Stat(ctx, "c"); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("Stat of a folder: %v", err)
	}
}

// Folders removed behind the store's back (an admin tidying up, a GC of empty folders) are
// made again; Put never reports ErrNotExist.
func TestFoldersRemovedBehindBack(t *testing.T) {
	dir := t.TempDir()
	s, _ := local.Open(dir)
	a := storetest.Name("c", "a")
	storetest.MustPut(t, s, a, []byte("a"))
	if err := s.Delete(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "c")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, ".tmp")); err != nil {
		t.Fatal(err)
	}
	storetest.MustPut(t, s, a, []byte("again"))
	b, _ := storetest.ReadAll(context.Background(), s, a, 0, -1)
	if string(b) != "again" {
		t.Fatalf("read %q", b)
	}
}

// PutUnsynced is Put without the fsyncs: the same create-only object, readable at once,
// ErrExist for a second writer, no temp file left; SyncPuts succeeds. The retry decorator
// forwards both.
func TestPutUnsynced(t *testing.T) {
	s, err := local.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	var u backend.UnsyncedPutter = s
	if _, ok := retry.Wrap(s, retry.Options{}).(backend.UnsyncedPutter); !ok {
		t.Fatal("retry.Wrap of a local store does not forward PutUnsynced")
	}
	ctx := context.Background()
	data := bytes.Repeat([]byte("imgfs"), 70_000)
	name := "c/ab/ab" + string(bytes.Repeat([]byte("0"), 62))
	if err := u.PutUnsynced(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := u.PutUnsynced(ctx, name, bytes.NewReader(data), int64(len(data))); !errors.Is(err, backend.ErrExist) {
		t.Fatalf("second PutUnsynced: %v, want ErrExist", err)
	}
	if err := u.PutUnsynced(ctx, "c/ab/ab"+string(bytes.Repeat([]byte("1"), 62)), bytes.NewReader(data[:10]), 20); err == nil {
		t.Fatal("PutUnsynced of a short source succeeded")
	}
	if err := u.SyncPuts(ctx); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, name, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got bytes.Buffer
	if _, err := got.ReadFrom(rc); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read back %d bytes, %v", got.Len(), err)
	}
	ents, err := os.ReadDir(filepath.Join(s.Dir(), ".tmp"))
	if err != nil || len(ents) != 0 {
		t.Fatalf("temp files left: %v, %v", ents, err)
	}
}
