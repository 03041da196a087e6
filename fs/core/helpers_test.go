package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/dedup/keyring"
)

func randSecret() keyring.Secret {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

func testKeys() *keyring.Keys {
	k := &keyring.Keys{Mode: keyring.ModeVault, MasterKey: randSecret(), ConvergenceSecret: randSecret(),
		MetaKey: randSecret(), HeaderKey: randSecret(), LocalKey: randSecret()}
	rand.Read(k.VaultID[:])
	return k
}

func testStore(t testing.TB) (*local.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

type env struct {
	t     testing.TB
	store backend.Store
	keys  *keyring.Keys
	cache string
	opts  Options
}

func newEnv(t testing.TB) *env {
	s, _ := testStore(t)
	return &env{t: t, store: s, keys: testKeys(), cache: filepath.Join(t.TempDir(), "cache"),
		opts: Options{CommitDelay: 20 * time.Millisecond}}
}

// open opens the FS and closes it at cleanup (if the test did not).
func (e *env) open() *FS {
	e.t.Helper()
	opts := e.opts
	opts.CacheDir = e.cache
	f, err := Open(context.Background(), e.store, e.keys, opts)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.t.Cleanup(func() { f.Close() })
	return f
}

func ctx() context.Context { return context.Background() }

// must returns v or panics (the test fails with the error and a stack trace).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err error, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

// writeFile creates (or truncates) path under the root and writes data in chunks.
func writeFile(t testing.TB, f *FS, path string, data []byte) Ino {
	t.Helper()
	dir, name := filepath.Split(path)
	parent := must(f.Resolve(dir))
	a, h, err := f.CreateFlags(parent, name, 0o644, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	ok(t, err)
	for off := 0; off < len(data); off += 100_000 {
		end := min(off+100_000, len(data))
		n, err := h.WriteAt(data[off:end], int64(off))
		ok(t, err)
		if n != end-off {
			t.Fatalf("short write %d", n)
		}
	}
	ok(t, h.Flush())
	ok(t, h.Release())
	return a.Ino
}

func readFile(t testing.TB, f *FS, path string) []byte {
	t.Helper()
	ino, err := f.Resolve(path)
	ok(t, err)
	h, err := f.OpenFile(ino, os.O_RDONLY)
	ok(t, err)
	defer h.Release()
	return readAllHandle(t, h)
}

func readAllHandle(t testing.TB, h *Handle) []byte {
	t.Helper()
	var out bytes.Buffer
	buf := make([]byte, 70_000)
	for off := int64(0); ; {
		n, err := h.ReadAt(buf, off)
		out.Write(buf[:n])
		off += int64(n)
		if err == io.EOF {
			return out.Bytes()
		}
		ok(t, err)
		if n == 0 {
			t.Fatal("zero read without EOF")
		}
	}
}

// tree lists every path with its kind and a checksum-free summary (for comparisons).
func listTree(t testing.TB, f *FS) []string {
	t.Helper()
	var out []string
	var walk func(ino Ino, prefix string)
	walk = func(ino Ino, prefix string) {
		ents, err := f.ReadDir(ino)
		ok(t, err)
		for _, e := range ents {
			p := prefix + "/" + e.Name
			a := must(f.GetAttr(e.Ino))
			line := p + " " + a.Mode.String()
			switch {
			case a.Mode.IsDir():
				walk(e.Ino, p)
			case a.Mode&os.ModeSymlink != 0:
				line += " -> " + must(f.Readlink(e.Ino))
			default:
				h := must(f.OpenFile(e.Ino, os.O_RDONLY))
				data := readAllHandle(t, h)
				h.Release()
				if int64(len(data)) != a.Size {
					t.Fatalf("%s: size %d but read %d bytes", p, a.Size, len(data))
				}
				line += " " + string(rune('0'+len(data)%10)) + " " + sha(data)
			}
			out = append(out, line)
		}
	}
	walk(RootIno, "")
	sort.Strings(out)
	return out
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// usedSpoolFiles counts spool files holding data (pool files hold only a header).
func usedSpoolFiles(t testing.TB, f *FS) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(f.dir, "spool"))
	ok(t, err)
	n := 0
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Size() > spoolHeader {
			n++
		}
	}
	if used := f.spoolUsed.Load(); used != 0 {
		t.Errorf("spool accounting shows %d bytes", used)
	}
	return n
}
