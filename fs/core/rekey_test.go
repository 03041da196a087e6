package core

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
)

func storeNames(t *testing.T, s backend.Store, prefix string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	ok(t, s.List(ctx(), prefix, func(i backend.Info) error {
		out[i.Name] = true
		return nil
	}))
	return out
}

func nextKeys(old *keyring.Keys) *keyring.Keys {
	k := testKeys()
	k.VaultID, k.Generation = old.VaultID, old.Generation+1
	return k
}

// TestRekey writes files and aux entries keyed by content IDs, rekeys (metadata only, and
// with content), and checks the docs/cli.md "rekey" promises: a fresh cache of the new keys
// reads every file and aux entry; the new root references no metadata object of the old
// keys; content objects are the old ones (metadata only) or all new ones (Content); the
// old cache is rebuilt under the new keys; nothing of the new root opens under the old key.
func TestRekey(t *testing.T) {
	for _, content := range []bool{false, true} {
		t.Run(map[bool]string{false: "metadata", true: "content"}[content], func(t *testing.T) {
			e := newEnv(t)
			f := e.open()
			small := []byte("a small file")
			big := randBytes(10<<20 + 12345) // two chunks at least (ChunkMax is 8 MiB)
			writeFile(t, f, "/a", small)
			writeFile(t, f, "/dup", small)
			must(f.Mkdir(RootIno, "d", 0o755))
			writeFile(t, f, "/d/big", big)
			writeFile(t, f, "/empty", nil)
			ok(t, f.Sync(ctx()))
			cidA := must3(f.ContentID(must(f.Resolve("/a"))))
			cidBig := must3(f.ContentID(must(f.Resolve("/d/big"))))
			ok(t, f.PutAux("emb", cidA[:], []byte("vector of a")))
			ok(t, f.PutAux("embnd", notDup(cidA, cidBig), []byte("mark")))
			ok(t, f.PutAux("embq", []byte("other key"), []byte("kept as is")))
			ok(t, f.Sync(ctx()))
			ok(t, f.Close())
			oldMeta := storeNames(t, e.store, "m/")
			oldContent := storeNames(t, e.store, "c/")

			next := nextKeys(e.keys)
			var switched uint64
			rep, err := Rekey(ctx(), e.store, e.keys, next, RekeyOptions{Content: content, Device: "rekeyer",
				Switch: func(_ context.Context, seq uint64, hash dedup.Locator) error {
					if _, err := e.store.Stat(ctx(), dedup.RootName(seq)); err == nil {
						t.Error("the root was stored before the switch")
					}
					switched = seq
					return nil
				}})
			ok(t, err)
			if switched != rep.Root || rep.Root != rep.FromRoot+1 || rep.MetaObjects == 0 {
				t.Fatalf("report %+v, switched %d", rep, switched)
			}
			if content && (rep.Contents < 2 || rep.ContentBytes != int64(len(small)+len(big))) {
				t.Fatalf("content report %+v", rep)
			}
			root := must(readAll(ctx(), e.store, dedup.RootName(rep.Root), 1<<20))
			if _, err := dedup.OpenRoot(e.keys.MetaKey, rep.Root, root); err == nil {
				t.Fatal("the new root opens under the old key")
			}

			// A fresh cache of the new keys.
			e2 := *e
			e2.keys, e2.cache = next, filepath.Join(t.TempDir(), "fresh")
			g := e2.open()
			for path, want := range map[string][]byte{"/a": small, "/dup": small, "/d/big": big, "/empty": {}} {
				if got := readFile(t, g, path); !bytes.Equal(got, want) {
					t.Fatalf("%s differs after the rekey", path)
				}
			}
			refs := must(g.ReferencedObjects(ctx()))
			for name := range refs {
				if oldMeta[name] {
					t.Fatalf("the new root references %s, a metadata object of the old keys", name)
				}
				if strings.HasPrefix(name, "c/") && oldContent[name] == content {
					t.Fatalf("content object %s: old %v, content rekey %v", name, oldContent[name], content)
				}
			}
			newA := must3(g.ContentID(must(g.Resolve("/a"))))
			newBig := must3(g.ContentID(must(g.Resolve("/d/big"))))
			if (newA != cidA) != content || (newBig != cidBig) != content {
				t.Fatal("content IDs changed without a content rekey, or kept with one")
			}
			aux := map[string]string{}
			for _, table := range []string{"emb", "embnd", "embq"} {
				ok(t, g.ForEachAux(table, func(k, v []byte) error {
					aux[table+" "+string(k)] = string(v)
					return nil
				}))
			}
			want := map[string]string{"emb " + string(newA[:]): "vector of a", "embnd " + string(notDup(newA, newBig)): "mark", "embq other key": "kept as is"}
			if len(aux) != len(want) {
				t.Fatalf("aux entries %d, want %d", len(aux), len(want))
			}
			for k, v := range want {
				if aux[k] != v {
					t.Fatalf("aux entry %q missing after the rekey", strings.SplitN(k, " ", 2)[0])
				}
			}
			ok(t, g.Close())

			// The old cache (no work of its own) is rebuilt under the new keys.
			e3 := *e
			e3.keys = next
			h := e3.open()
			if got := readFile(t, h, "/d/big"); !bytes.Equal(got, big) {
				t.Fatal("the old cache, rebuilt, reads other bytes")
			}
			ok(t, h.Close())
			// ... and now refuses the old generation (header rollback).
			e4 := *e
			_, err = Open(ctx(), e4.store, e4.keys, Options{CacheDir: e4.cache})
			wantErr(t, err, ErrRollback)
		})
	}
}

func must3(id [32]byte, okv bool, err error) [32]byte {
	if err != nil || !okv {
		panic("no content id")
	}
	return id
}

func notDup(a, b [32]byte) []byte {
	if bytes.Compare(b[:], a[:]) < 0 {
		a, b = b, a
	}
	return append(append([]byte{}, a[:]...), b[:]...)
}

// TestStaleCacheRefused: a cache of the old keys that holds work not in the store is
// refused after a rekey (its records cannot be read under the new keys), with
// ErrStaleCache, and left as it is.
func TestStaleCacheRefused(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	writeFile(t, f, "/a", []byte("x"))
	ok(t, f.Sync(ctx()))
	ok(t, f.Close())
	// Pretend a change that never reached a root (what a crash leaves).
	db := must(bolt.Open(filepath.Join(e.cache, "state.db"), 0o600, nil))
	ok(t, db.Update(func(tx *bolt.Tx) error { return putU64(tx, mChg, getU64(tx, mCommitted)+1) }))
	ok(t, db.Close())
	next := nextKeys(e.keys)
	_, err := Rekey(ctx(), e.store, e.keys, next, RekeyOptions{Switch: func(context.Context, uint64, dedup.Locator) error { return nil }})
	ok(t, err)
	_, err = Open(ctx(), e.store, next, Options{CacheDir: e.cache})
	wantErr(t, err, ErrStaleCache)
	if !strings.Contains(err.Error(), "changes not yet in a root") || !strings.Contains(err.Error(), e.cache) {
		t.Fatalf("message does not say what and where: %v", err)
	}
	if g, _, _ := readKeyGen(e.cache); g != 0 {
		t.Fatalf("the refused cache's generation changed to %d", g)
	}
	// A race lost at the switch leaves nothing switched.
	next2 := nextKeys(next)
	_, err = Rekey(ctx(), e.store, next, next2, RekeyOptions{Switch: func(_ context.Context, seq uint64, _ dedup.Locator) error {
		return e.store.Put(ctx(), dedup.RootName(seq), bytes.NewReader([]byte("theirs")), 6)
	}})
	wantErr(t, err, ErrRekeyRace)
}

// TestRekeyCheckpoint: a content rekey that fails at its switch leaves a checkpoint; the
// rerun with the same new keys takes every content from it whose chunks are all still in
// the store, and re-encrypts the one whose chunk was deleted meanwhile. FinishRekey removes
// the checkpoint.
func TestRekeyCheckpoint(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	files := map[string][]byte{"/a": []byte("a"), "/b": randBytes(300_000), "/c": randBytes(2 << 20)}
	for p, b := range files {
		writeFile(t, f, p, b)
	}
	ok(t, f.Sync(ctx()))
	cidB := must3(f.ContentID(must(f.Resolve("/b"))))
	ok(t, f.Close())
	next := nextKeys(e.keys)
	crash := errors.New("crash before the switch")
	_, err := Rekey(ctx(), e.store, e.keys, next, RekeyOptions{Content: true,
		Switch: func(context.Context, uint64, dedup.Locator) error { return crash }})
	wantErr(t, err, crash)
	ck := must(loadCheckpoint(ctx(), e.store, next))
	if len(ck.done) != 3 || len(ck.names) != 1 {
		t.Fatalf("checkpoint: %d contents, %d objects", len(ck.done), len(ck.names))
	}
	if c := must(loadCheckpoint(ctx(), e.store, e.keys)); len(c.done) != 0 {
		t.Fatal("the checkpoint opens under the old keys")
	}
	ok(t, e.store.Delete(ctx(), dedup.ContentName(ck.done[cidB].ChunkLocator(0))))

	rep, err := Rekey(ctx(), e.store, e.keys, next, RekeyOptions{Content: true,
		Switch: func(context.Context, uint64, dedup.Locator) error { return nil }})
	ok(t, err)
	if rep.Resumed != 2 || rep.Contents != 1 || rep.ContentBytes != int64(len(files["/b"])) || rep.Uploaded != 1 {
		t.Fatalf("rerun: %+v", rep)
	}
	_, _, err = FinishRekey(ctx(), e.store, next)
	ok(t, err)
	if left := storeNames(t, e.store, rekeyPrefix); len(left) != 0 {
		t.Fatalf("checkpoints left: %v", left)
	}
	e2 := *e
	e2.keys, e2.cache = next, filepath.Join(t.TempDir(), "fresh")
	g := e2.open()
	for p, want := range files {
		if !bytes.Equal(readFile(t, g, p), want) {
			t.Fatalf("%s differs", p)
		}
	}
}
