package transfer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/fs/core"
)

// openVault opens a namespace over a real local store with a real vault; reopen closes it
// and opens it again with a fresh cache (the store's roots are all that is left).
func openVault(t *testing.T) (fsys *core.FS, reopen func() *core.FS) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := local.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyring.Create(ctx, st, []byte("transfer test passphrase"), keyring.CreateOptions{KDF: keyring.MinKDF})
	if err != nil {
		t.Fatal(err)
	}
	gen := 0
	open := func() *core.FS {
		gen++
		f, err := core.Open(ctx, st, keys, core.Options{CacheDir: filepath.Join(dir, "cache", string(rune('a'+gen))), RefreshInterval: -1,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	fsys = open()
	t.Cleanup(func() {
		if fsys != nil {
			fsys.Close()
		}
		keys.Wipe()
		st.Close()
	})
	return fsys, func() *core.FS {
		if err := fsys.Close(); err != nil {
			t.Fatal(err)
		}
		fsys = open()
		return fsys
	}
}

func writeLocal(t *testing.T, p string, b []byte, mode os.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

type node struct {
	mode   os.FileMode
	mtime  int64
	data   string // file bytes or link target
	inoKey uint64 // local inode, to compare hard links
}

// tree reads a local tree: mode, mtime, bytes or link target of every entry below root.
func tree(t *testing.T, root string) map[string]node {
	t.Helper()
	out := map[string]node{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		n := node{mode: info.Mode() & (os.ModeType | keepMode), mtime: info.ModTime().UnixNano(),
			inoKey: info.Sys().(*syscall.Stat_t).Ino}
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			n.data, err = os.Readlink(p)
		case info.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			n.data = string(b)
		}
		out[rel] = n
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type countProgress struct {
	total, added int64
	starts       int
}

func (p *countProgress) Start(total int64) { p.total = total; p.starts++ }
func (p *countProgress) Add(n int64)       { p.added += n }

// Import then export through a fresh cache gives back the tree: bytes (empty, one buffer,
// several buffers), modes with setuid/sticky bits, mtimes of files and directories,
// symlinks, hard links; a fifo is skipped with a warning and nothing else.
func TestImportExportRoundTrip(t *testing.T) {
	fsys, reopen := openVault(t)
	src := filepath.Join(t.TempDir(), "src")
	old := time.Date(2021, 3, 4, 5, 6, 7, 8000, time.UTC)
	writeLocal(t, filepath.Join(src, "empty"), nil, 0o644, old)
	writeLocal(t, filepath.Join(src, "a", "small.jpg"), randBytes(1234), 0o4755, old.Add(time.Hour))
	writeLocal(t, filepath.Join(src, "a", "b", "big.bin"), randBytes(bufSize*2+17), 0o600, old.Add(2*time.Hour))
	if err := os.Link(filepath.Join(src, "a", "small.jpg"), filepath.Join(src, "hard.jpg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a/b/big.bin", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "a", "b"), 0o1750); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a/b", "a"} {
		if err := os.Chtimes(filepath.Join(src, d), old, old.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	var warn bytes.Buffer
	prog := &countProgress{}
	res, err := Import(context.Background(), fsys, src, "/x/y", Options{Warn: &warn, Progress: prog})
	if err != nil {
		t.Fatal(err)
	}
	wantBytes := int64(1234 + bufSize*2 + 17)
	if want := (Result{Files: 3, Dirs: 2, Symlinks: 1, Hardlinks: 1, Skipped: 1, Bytes: wantBytes}); res != want {
		t.Fatalf("import result %+v, want %+v", res, want)
	}
	// The local total counts both names of the hard link; the copy only one.
	if prog.starts != 1 || prog.total != wantBytes+1234 || prog.added != wantBytes {
		t.Fatalf("progress: %+v", prog)
	}
	if !strings.Contains(warn.String(), "skipping "+filepath.Join(src, "fifo")) || strings.Count(warn.String(), "\n") != 1 {
		t.Fatalf("warnings: %q", warn.String())
	}

	fsys = reopen()
	out := filepath.Join(t.TempDir(), "out")
	res, err = Export(context.Background(), fsys, "/x/y", out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Result{Files: 3, Dirs: 2, Symlinks: 1, Hardlinks: 1, Bytes: wantBytes}); res != want {
		t.Fatalf("export result %+v, want %+v", res, want)
	}
	want, got := tree(t, src), tree(t, out)
	delete(want, "fifo")
	if len(got) != len(want) {
		t.Fatalf("exported %d entries, want %d: %v", len(got), len(want), got)
	}
	for p, w := range want {
		g, ok := got[p]
		if !ok || g.mode != w.mode || g.data != w.data || (g.mtime != w.mtime && w.mode&os.ModeSymlink == 0) {
			t.Errorf("%s: got mode %v mtime %d (%d bytes), want mode %v mtime %d (%d bytes)", p, g.mode, g.mtime, len(g.data), w.mode, w.mtime, len(w.data))
		}
	}
	if got["hard.jpg"].inoKey != got["a/small.jpg"].inoKey {
		t.Error("hard link not kept")
	}
	if ents, _ := os.ReadDir(out); len(ents) != 4 {
		t.Errorf("export left %d entries in %s, want 4 (no temporary files)", len(ents), out)
	}
}

// A single file goes into a vault directory under its own name, or to the named path
// (parents created); a second import replaces it; a directory of that name is refused.
func TestImportFileTargets(t *testing.T) {
	fsys, _ := openVault(t)
	ctx := context.Background()
	dir := t.TempDir()
	f := filepath.Join(dir, "photo.jpg")
	writeLocal(t, f, []byte("version one"), 0o644, time.Now())
	if _, err := Import(ctx, fsys, f, "/", Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(ctx, fsys, f, "/p/q/renamed.jpg", Options{}); err != nil {
		t.Fatal(err)
	}
	writeLocal(t, f, []byte("version two, longer"), 0o644, time.Now())
	if _, err := Import(ctx, fsys, f, "/", Options{}); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for vp, want := range map[string]string{"/photo.jpg": "version two, longer", "/p/q/renamed.jpg": "version one"} {
		if _, err := Export(ctx, fsys, vp, out, Options{}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(out, filepath.Base(vp)))
		if err != nil || string(b) != want {
			t.Fatalf("%s: %q, %v; want %q", vp, b, err, want)
		}
	}
	if _, err := Import(ctx, fsys, filepath.Join(dir, "photo.jpg"), "/p/q", Options{}); err != nil {
		t.Fatal(err)
	}
	writeLocal(t, filepath.Join(dir, "tree", "q"), []byte("a file where a directory is"), 0o644, time.Now())
	if _, err := Import(ctx, fsys, filepath.Join(dir, "tree"), "/p", Options{}); err == nil || !strings.Contains(err.Error(), "is a directory in the vault") {
		t.Fatalf("file over a vault directory: %v", err)
	}
	ents, err := fsys.ReadDir(mustResolve(t, fsys, "/p"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name, "imgfs-import") {
			t.Fatalf("temporary file left in the vault: %s", e.Name)
		}
	}
}

func mustResolve(t *testing.T, fsys *core.FS, p string) core.Ino {
	t.Helper()
	ino, err := fsys.Resolve(p)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

// A canceled import stops with the context's error and leaves no file under a temporary or
// partial name; bad sources and missing vault paths give clear errors.
func TestImportCanceledAndErrors(t *testing.T) {
	fsys, _ := openVault(t)
	src := filepath.Join(t.TempDir(), "src")
	writeLocal(t, filepath.Join(src, "a.bin"), randBytes(3*bufSize), 0o644, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Import(ctx, fsys, src, "/in", Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled import: %v", err)
	}
	if ino, err := fsys.Resolve("/in"); err == nil {
		if ents, _ := fsys.ReadDir(ino); len(ents) != 0 {
			t.Fatalf("canceled import left %v", ents)
		}
	}

	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(context.Background(), fsys, fifo, "/", Options{}); !errors.Is(err, ErrSourceKind) {
		t.Fatalf("fifo source: %v", err)
	}
	if _, err := CheckSource(filepath.Join(src, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing source: %v", err)
	}
	_, err := Export(context.Background(), fsys, "/no/such", t.TempDir(), Options{})
	if err == nil || err.Error() != "/no/such: no such file or directory in the vault" {
		t.Fatalf("export of a missing path: %v", err)
	}
}
