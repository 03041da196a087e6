package core

import (
	"fmt"
	"maps"
	"os"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkCommitOneChange: a root commit after one chmod, in vaults of growing size. The
// commit rebuilds only the dirty shard's tree object; its cost should not grow with the
// number of files (docs/core.md, "Roots and metadata objects").
func BenchmarkCommitOneChange(b *testing.B) {
	for _, n := range []int{1000, 10000, 40000} {
		b.Run(fmt.Sprintf("files=%d", n), func(b *testing.B) {
			e := newEnv(b)
			e.opts.CommitDelay = time.Hour
			e.opts.RefreshInterval = -1
			f := e.open()
			var inos []Ino
			for d := 0; d < 20; d++ {
				dir, err := f.Mkdir(RootIno, fmt.Sprintf("d%d", d), 0o755)
				ok(b, err)
				for i := 0; i < n/20; i++ {
					a, h, err := f.CreateFlags(dir.Ino, fmt.Sprintf("f%d", i), 0o644, os.O_RDWR|os.O_CREATE|os.O_EXCL)
					ok(b, err)
					ok(b, h.Release())
					inos = append(inos, a.Ino)
				}
			}
			ok(b, f.Sync(ctx()))
			b.ResetTimer()
			c0 := cpuClock()
			for i := 0; i < b.N; i++ {
				mode := os.FileMode(0o600 | i%2*0o40)
				_, err := f.SetAttr(inos[i*7919%len(inos)], SetAttrRequest{Mode: &mode})
				ok(b, err)
				ok(b, f.commitNow(ctx()))
			}
			reportCPU(b, c0, 0)
		})
	}
}

// The commit finds the directory entries of the dirty shards from each inode's (Parent,
// Name) instead of walking every entry: it must give exactly the entries the walk gives,
// through renames, hard links (the walk is used) and the removal of a link.
func TestSnapshotDirentsByName(t *testing.T) {
	e := newEnv(t)
	e.opts.CommitDelay = time.Hour
	e.opts.RefreshInterval = -1
	f := e.open()
	check := func(step string) {
		t.Helper()
		ok(t, f.view(func(tx *bolt.Tx) error {
			dirty, _, _, err := f.snapshot(tx, nil, nil)
			ok(t, err)
			got, want := map[treeDirent]bool{}, map[treeDirent]bool{}
			in := map[Ino]bool{}
			for _, tr := range dirty {
				for _, d := range tr.Dirents {
					got[d] = true
				}
				for _, ti := range tr.Inodes {
					in[ti.Ino] = true
				}
			}
			ok(t, tx.Bucket(bDirents).ForEach(func(k, v []byte) error {
				de, err := f.openDirent(k, v)
				if err == nil && in[de.Ino] {
					want[treeDirent{Parent: Ino(be64u(k[:8])), Name: de.Name, Ino: de.Ino}] = true
				}
				return err
			}))
			if !maps.Equal(got, want) || len(want) == 0 {
				t.Fatalf("%s: entries %v, the walk gives %v", step, got, want)
			}
			return nil
		}))
	}
	writeFile(t, f, "/a", []byte("a"))
	writeFile(t, f, "/b", []byte("b"))
	d, err := f.Mkdir(RootIno, "d", 0o755)
	ok(t, err)
	check("files")
	ok(t, f.Sync(ctx()))
	ok(t, f.Rename(RootIno, "a", d.Ino, "a2"))
	check("rename")
	bIno := must(f.Resolve("/b"))
	_, err = f.Link(bIno, d.Ino, "b2")
	ok(t, err)
	check("hard link")
	ok(t, f.Remove(RootIno, "b", false))
	check("one link removed")
	ok(t, f.Rename(RootIno, "d", RootIno, "e"))
	check("directory renamed")
	ok(t, f.Sync(ctx()))
	e.cache = t.TempDir()
	g := e.open()
	if s := string(readFile(t, g, "/e/b2")); s != "b" {
		t.Fatalf("fresh cache: /e/b2 = %q", s)
	}
	if s := string(readFile(t, g, "/e/a2")); s != "a" {
		t.Fatalf("fresh cache: /e/a2 = %q", s)
	}
}
