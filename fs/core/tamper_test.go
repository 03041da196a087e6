package core

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/dedup"
)

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	ok(t, err)
	b[off%int64(len(b))] ^= 0x40
	ok(t, os.WriteFile(path, b, 0o600))
}

// A damaged object in the store reads as EIO, never as wrong bytes, through both read
// paths (direct from a local store, and fetched into the read cache); a damaged cache
// entry is dropped and fetched again.
func TestTamperedObjectIsEIO(t *testing.T) {
	for _, wrapped := range []bool{false, true} {
		e := newEnv(t)
		ls := e.store.(*local.Store)
		if wrapped {
			e.store = &failStore{Store: ls} // hides Path: reads go through fetch + cache
		}
		f := e.open()
		data := randBytes(300_000)
		ino := writeFile(t, f, "/x", data)
		ok(t, f.Sync(ctx()))
		id, sealed, err := f.ContentID(ino)
		ok(t, err)
		if !sealed {
			t.Fatal("not sealed")
		}
		objPath := must(ls.Path(dedup.ContentName(id)))
		if wrapped {
			// Damage the cache copy first: it is detected, dropped and fetched again.
			cached := filepath.Join(e.cache, "obj", dedup.Locator(id).String())
			if _, err := os.Stat(cached); err != nil {
				t.Fatalf("sealed object not cached: %v", err)
			}
			flipByte(t, cached, 200_000)
			if got := readFile(t, f, "/x"); !bytes.Equal(got, data) {
				t.Fatal("damaged cache entry gave wrong bytes")
			}
			os.Remove(cached)
		}
		ok(t, f.Close())
		for _, off := range []int64{5, 100, 150_000, -20} {
			pos := off
			if off < 0 {
				pos = must(os.Stat(objPath)).Size() + off
			}
			flipByte(t, objPath, pos)
			e.cache = t.TempDir()
			f = e.open()
			h := must(f.OpenFile(must(f.Resolve("/x")), os.O_RDONLY))
			buf := make([]byte, 400_000)
			n, err := h.ReadAt(buf, 0)
			if err == nil || !errorsIsEIO(err) {
				t.Fatalf("wrapped=%v flip at %d: read %d bytes, err %v", wrapped, off, n, err)
			}
			if n > 0 && !bytes.Equal(buf[:n], data[:n]) {
				t.Fatal("wrong bytes released")
			}
			h.Release()
			ok(t, f.Close())
			flipByte(t, objPath, pos) // repair
		}
	}
}

func errorsIsEIO(err error) bool { return errorsIs(err, syscall.EIO) }
