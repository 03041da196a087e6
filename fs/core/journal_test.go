package core

import (
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// journalWorkload runs namespace and data operations inside one group-commit window after
// a committed base, and returns the journal's size and the tree after each operation
// (index 0: before the first). The FS is crashed (kill -9) at the end.
func journalWorkload(t *testing.T, e *env) (offs []int64, trees [][]string) {
	t.Helper()
	fs := &failStore{Store: e.store}
	e.store = fs
	f := e.open()
	writeFile(t, f, "/base", randBytes(70_000))
	ok(t, f.Mkdir2(t, "/d"))
	ok(t, f.Sync(ctx())) // older than the window: must survive every cut
	// No seal finishes inside the window, so the journal holds the operations' records
	// only (a seal's swap is a record too, but it would land at a random moment).
	fs.fail.Store(true)
	t.Cleanup(func() { fs.fail.Store(false) })
	jpath := filepath.Join(e.cache, journalFile)
	snap := func() {
		st, err := os.Stat(jpath)
		ok(t, err)
		offs = append(offs, st.Size())
		trees = append(trees, listTree(t, f))
	}
	snap()
	d := must(f.Resolve("/d"))
	steps := []func(){
		func() { writeFile(t, f, "/d/a", randBytes(150_000)) },
		func() { must(f.Mkdir(d, "sub", 0o755)) },
		func() { ok(t, f.Rename(d, "a", RootIno, "a2")) },
		func() { writeFile(t, f, "/base", randBytes(1000)) }, // rewrite over sealed content
		func() { ok(t, f.SetXattr(must(f.Resolve("/a2")), "user.k", []byte("v"), 0)) },
		func() { must(f.Symlink(RootIno, "ln", "a2")) },
		func() { ok(t, f.Remove(RootIno, "base", false)) },
		func() { writeFile(t, f, "/d/sub/small", []byte("small")) },
		func() {
			h := must(f.OpenFile(must(f.Resolve("/a2")), os.O_RDWR))
			must(h.WriteAt([]byte("EDIT"), 65_000)) // an edit across a block boundary
			ok(t, h.Flush())
			ok(t, h.Release())
		},
	}
	for _, s := range steps {
		s()
		snap()
	}
	f.crash()
	for i := 1; i < len(offs); i++ {
		if offs[i] <= offs[i-1] {
			t.Fatalf("operation %d wrote no journal record (or a commit emptied the journal)", i)
		}
	}
	return offs, trees
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// cutCache is a copy of cache whose journal is cut to n bytes.
func cutCache(t *testing.T, cache string, n int64) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "cut")
	copyDir(t, cache, dst)
	ok(t, os.Truncate(filepath.Join(dst, journalFile), n))
	return dst
}

// replayer applies a journal to the committed state.db of a cache the way Open does, in a
// transaction that is rolled back, and returns every bucket entry (sealed values compared
// as bytes).
type replayer struct {
	f  *FS
	db *bolt.DB
}

func newReplayer(t *testing.T, e *env, cache string) *replayer {
	t.Helper()
	dir := t.TempDir()
	db0, err := os.ReadFile(filepath.Join(cache, "state.db"))
	ok(t, err)
	ok(t, os.WriteFile(filepath.Join(dir, "state.db"), db0, 0o600))
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, nil)
	ok(t, err)
	t.Cleanup(func() { db.Close() })
	f := &FS{dir: cache, keys: e.keys, lc: newLocalCrypto(e.keys.LocalKey), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return &replayer{f: f, db: db}
}

func (r *replayer) dump(t *testing.T, data []byte) map[string]string {
	t.Helper()
	tx, err := r.db.Begin(true)
	ok(t, err)
	defer tx.Rollback()
	_, err = r.f.applyJournal(tx, r.f.journalAEAD(), data, getU64(tx, mJournalGen))
	ok(t, err)
	out := map[string]string{}
	var walk func(prefix string, b *bolt.Bucket)
	walk = func(prefix string, b *bolt.Bucket) {
		b.ForEach(func(k, v []byte) error {
			if v == nil {
				walk(prefix+string(k)+"/", b.Bucket(k))
			} else {
				out[prefix+string(k)] = string(v)
			}
			return nil
		})
	}
	tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		walk(string(name)+"/", b)
		return nil
	})
	return out
}

// recordEnds parses the journal's framing: the offset after each record.
func recordEnds(data []byte) []int64 {
	var ends []int64
	for off := 0; off+4 <= len(data); {
		off += 4 + int(binary.BigEndian.Uint32(data[off:]))
		ends = append(ends, int64(off))
	}
	return ends
}

// TestJournalCutReplay: a journal cut at any byte (a power loss while the page cache was
// being written back) replays to a consistent tree: the state after the last whole
// record, never part of one, and never less than the last batch commit.
func TestJournalCutReplay(t *testing.T) {
	old := batchDelay
	batchDelay = time.Hour // the whole workload stays in one window
	t.Cleanup(func() { batchDelay = old })
	e := newEnv(t)
	e.opts.CommitDelay = time.Hour
	e.opts.RefreshInterval = -1
	offs, trees := journalWorkload(t, e)
	cache := e.cache
	data, err := os.ReadFile(filepath.Join(cache, journalFile))
	ok(t, err)
	if int64(len(data)) != offs[len(offs)-1] {
		t.Fatalf("journal is %d bytes, last operation ended at %d", len(data), offs[len(offs)-1])
	}
	ends := recordEnds(data)
	if ends[len(ends)-1] != int64(len(data)) {
		t.Fatal("journal framing does not end at the end of the file")
	}

	// Whole operations: a real Open of the cut cache shows the tree after that operation.
	for k, off := range offs {
		c := *e
		c.cache = cutCache(t, cache, off)
		f := c.open()
		if got := listTree(t, f); !slices.Equal(got, trees[k]) {
			t.Fatalf("cut after operation %d: tree\n%v\nwant\n%v", k, got, trees[k])
		}
		f.crash()
	}

	// Every byte of the last records (and the record boundaries before them): the replay
	// applies exactly the whole records before the cut.
	rp := newReplayer(t, e, cache)
	atEnd := map[int64]map[string]string{0: rp.dump(t, nil)}
	for _, end := range ends {
		atEnd[end] = rp.dump(t, data[:end])
	}
	from := offs[len(offs)-4]
	for n := from; n <= int64(len(data)); n++ {
		whole := int64(0)
		for _, end := range ends {
			if end <= n {
				whole = end
			}
		}
		got := rp.dump(t, data[:n])
		want := atEnd[whole]
		if len(got) != len(want) {
			t.Fatalf("cut at %d: %d entries, want %d (the records up to %d)", n, len(got), len(want), whole)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("cut at %d: entry %q differs from the replay of the whole records before it", n, k)
			}
		}
	}
	// Cuts inside the record of an operation that writes one (rename, unlink, the edit's
	// close) through a real Open: the tree before that operation.
	for _, step := range []int{2, 6, 8} {
		for _, n := range []int64{offs[step+1] - 1, offs[step+1] - 20} {
			c := *e
			c.cache = cutCache(t, cache, n)
			f := c.open()
			got := listTree(t, f)
			f.crash()
			if !slices.Equal(got, trees[step]) {
				t.Fatalf("cut at %d inside operation %d: tree\n%v\nwant\n%v", n, step+1, got, trees[step])
			}
		}
	}
}

// TestJournalSpoolNotWhole: after a power loss inside the window the journal may have
// reached the disk while a spool it points at did not (a slot missing or torn). The replay
// stops before that record: the tree is the one before that close, never wrong bytes.
func TestJournalSpoolNotWhole(t *testing.T) {
	old := batchDelay
	batchDelay = time.Hour
	t.Cleanup(func() { batchDelay = old })
	for _, damage := range []string{"hole", "torn"} {
		e := newEnv(t)
		e.opts.CommitDelay = time.Hour
		e.opts.RefreshInterval = -1
		f := e.open()
		writeFile(t, f, "/keep", []byte("kept"))
		f.mu.Lock()
		ok(t, f.commitLocked())
		f.mu.Unlock()
		jpath := filepath.Join(e.cache, journalFile)
		a, h, err := f.Create(RootIno, "a", 0o644, true)
		ok(t, err)
		ino := a.Ino
		before := listTree(t, f) // /a created (its own record), empty
		must(h.WriteAt(randBytes(200_000), 0))
		ok(t, h.Flush())
		ok(t, h.Release())
		var spool uint64
		ok(t, f.view(func(tx *bolt.Tx) error {
			n, err := f.getInode(tx, ino)
			spool = n.Spool
			return err
		}))
		writeFile(t, f, "/b", []byte("after a"))
		f.crash()
		if st, _ := os.Stat(jpath); st.Size() == 0 {
			t.Fatal("empty journal")
		}
		sf, err := os.OpenFile(filepath.Join(e.cache, "spool", itoa(int(spool))), os.O_RDWR, 0)
		ok(t, err)
		switch damage {
		case "hole": // slot 1 never reached the disk: its nonce reads as zeros
			_, err = sf.WriteAt(make([]byte, 12), slotOff(1))
		case "torn": // a middle page of slot 2 did not reach the disk
			_, err = sf.WriteAt(make([]byte, 4096), slotOff(2)+8192)
		}
		ok(t, err)
		sf.Close()
		f = e.open()
		if got := listTree(t, f); !slices.Equal(got, before) {
			t.Fatalf("%s: tree after replay\n%v\nwant the tree before the damaged close\n%v", damage, got, before)
		}
		f.crash()
	}
}

func FuzzDecodeJournalRec(f *testing.F) {
	r := journalRec{ops: []jop{{kind: jPut, path: [][]byte{bInodes}, key: []byte("k"), val: []byte("v")},
		{kind: jDel, path: [][]byte{bAux, []byte("t")}, key: []byte("x")}},
		checks: []spoolCheck{{id: 7}}}
	f.Add(encodeJournalRec(&r, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeJournalRec(b)
		if err != nil {
			return
		}
		again, err := decodeJournalRec(encodeJournalRec(&r, nil))
		if err != nil || len(again.ops) != len(r.ops) || len(again.checks) != len(r.checks) {
			t.Fatalf("re-encoding does not round-trip: %v", err)
		}
	})
}
