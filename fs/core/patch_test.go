package core

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
)

// dueNow makes ino's compaction due now and wakes the compactor.
func dueNow(f *FS, ino Ino) {
	f.cmp.mu.Lock()
	f.cmp.due[ino] = time.Now()
	f.cmp.mu.Unlock()
	select {
	case f.cmp.kick <- struct{}{}:
	default: // a kick is pending already
	}
}

// collectGarbage deletes every content object of the store that f's live set does not name
// (what gc would delete once the grace period is over).
func collectGarbage(t *testing.T, f *FS, store backend.Store) int {
	t.Helper()
	live := must(f.ReferencedObjects(ctx()))
	var dead []string
	ok(t, store.List(ctx(), "c/", func(i backend.Info) error {
		if !live[i.Name] {
			dead = append(dead, i.Name)
		}
		return nil
	}))
	for _, n := range dead {
		ok(t, store.Delete(ctx(), n))
	}
	return len(dead)
}

// TestPiecesCrashAndGC: a file holding pieces (an fsynced edit), then a closed but unsealed
// edit over them (a journal record whose base has pieces), survives kill -9; the live set
// keeps every object its pieces use (a fresh cache reads it after the rest is deleted), and
// after compaction the list is the chunking of the bytes and the old objects are garbage.
func TestPiecesCrashAndGC(t *testing.T) {
	e := newEnv(t)
	e.opts.CommitDelay = 1 << 40 // roots only from Fsync/Sync
	e.opts.CompactDelay = -1     // compaction only when the test says
	f := e.open()
	data := randBytes(14 << 20)
	ino := writeFile(t, f, "/db", data)
	ok(t, f.Sync(ctx()))
	h := openRW(t, f, "/db", 0)
	for _, off := range []int{3 << 20, 9<<20 + 100} {
		p := randBytes(5000)
		must(h.WriteAt(p, int64(off)))
		copy(data[off:], p)
	}
	ok(t, h.Fsync(ctx()))
	if c := inodeOf(t, f, ino).Ref; c.Pieces() < 4 {
		t.Fatalf("after two edits: %v", c)
	}
	for _, off := range []int{3<<20 + 1000, 9<<20 + 200} { // both blocks again: the patch object becomes garbage
		p := randBytes(3000)
		must(h.WriteAt(p, int64(off)))
		copy(data[off:], p)
	}
	ok(t, h.Flush())
	ok(t, h.Release())
	f.crash()

	f = e.open()
	if got := readFile(t, f, "/db"); !bytes.Equal(got, data) {
		t.Fatalf("after kill -9: bytes differ at %d", firstDiff(got, data))
	}
	ok(t, f.Sync(ctx()))
	if c := inodeOf(t, f, ino).Ref; c.Pieces() == 0 {
		t.Fatalf("the replayed edit was re-chunked, not patched: %v", c)
	}
	if n := collectGarbage(t, f, e.store); n < 1 {
		t.Errorf("no garbage after a patch over a patch (%d)", n)
	}
	ok(t, f.Close())
	e.cache = t.TempDir()
	f = e.open()
	if got := readFile(t, f, "/db"); !bytes.Equal(got, data) {
		t.Fatalf("fresh cache after gc: bytes differ at %d", firstDiff(got, data))
	}

	// Compaction (nothing scheduled or marked here: a fresh cache).
	f.scheduleCompact(ino)
	f.cmp.mu.Lock()
	n := len(f.cmp.due)
	f.cmp.mu.Unlock()
	if f.compactDelay() >= 0 || n != 0 {
		t.Fatal("CompactDelay < 0 still schedules")
	}
	if retry, err := f.compactIno(ctx(), ino); err != nil || retry {
		t.Fatalf("compaction: retry %v, %v", retry, err)
	}
	c := inodeOf(t, f, ino).Ref
	if c.Pieces() != 0 || !equalInts(contentSizes(c), f.chunker.Split(data)) {
		t.Fatalf("compacted: %v, chunking gives %v", contentSizes(c), f.chunker.Split(data))
	}
	ok(t, f.Sync(ctx()))
	if n := collectGarbage(t, f, e.store); n < 2 {
		t.Errorf("compaction left %d objects as garbage, want the patch object and the old chunk(s)", n)
	}
	ok(t, f.Close())
	e.cache = t.TempDir()
	f = e.open()
	if got := readFile(t, f, "/db"); !bytes.Equal(got, data) {
		t.Fatalf("fresh cache after compaction and gc: bytes differ at %d", firstDiff(got, data))
	}
}

// TestCompactionWaitsForWriters: a compaction does not swap the list under an open spool
// with unrecorded writes (it says retry), and the background compactor settles the file
// once it is closed.
func TestCompactionWaitsForWriters(t *testing.T) {
	e := newEnv(t)
	e.opts.CompactDelay = time.Hour // the test starts the compactions
	f := e.open()
	data := randBytes(6 << 20)
	ino := writeFile(t, f, "/v", data)
	ok(t, f.Sync(ctx()))
	h := openRW(t, f, "/v", 0)
	must(h.WriteAt([]byte("edit one"), 4<<20))
	copy(data[4<<20:], "edit one")
	ok(t, h.Fsync(ctx()))
	must(h.WriteAt([]byte("edit two, not flushed"), 1<<20))
	copy(data[1<<20:], "edit two, not flushed")
	before := inodeOf(t, f, ino).Ref
	retry, err := f.compactIno(ctx(), ino)
	ok(t, err)
	if !retry || inodeOf(t, f, ino).Ref != before {
		t.Fatal("compaction swapped the list under unrecorded writes")
	}
	ok(t, h.Release())
	ok(t, f.Sync(ctx()))
	dueNow(f, ino) // the background compactor settles it; poll with a deadline
	deadline := time.Now().Add(60 * time.Second)
	for inodeOf(t, f, ino).Ref.Pieces() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not compacted: %v", inodeOf(t, f, ino).Ref)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with the deadline above
	}
	if got := readFile(t, f, "/v"); !bytes.Equal(got, data) {
		t.Fatalf("bytes differ at %d", firstDiff(got, data))
	}
	if !equalInts(contentSizes(inodeOf(t, f, ino).Ref), f.chunker.Split(data)) {
		t.Fatal("compacted list is not the chunking of the bytes")
	}
}

// TestPiecesRecords: a tree, an inode record and a journal record whose lists hold pieces
// round-trip (tag 3) and pass the tree check.
func TestPiecesRecords(t *testing.T) {
	tr := piecesTree()
	ref := tr.Inodes[2].Node.Ref
	if ref.Pieces() != 3 || ref.Size() != 3<<20 {
		t.Fatalf("sample: %v", ref)
	}
	got, err := decodeTree(encodeTree(tr))
	ok(t, err)
	ok(t, checkTree(got))
	if got.Inodes[2].Node.Ref != ref {
		t.Fatalf("tree round trip: %v", got.Inodes[2].Node.Ref)
	}
	n := tr.Inodes[2].Node
	m, err := decodeInodeRecord(encodeInodeRecord(&n))
	ok(t, err)
	if m.Ref != ref {
		t.Fatalf("inode record round trip: %v", m.Ref)
	}
	rec := pendingRec{Ino: 4, Size: 3 << 20, Base: ref, BaseLen: 3 << 20}
	if p, err := decodePending(encodePending(rec)); err != nil || p != rec {
		t.Fatalf("journal record round trip: %+v %v", p, err)
	}
}

// BenchmarkCompactEdit: the background cost an edit leaves behind: compacting the pieces of
// one 4 KiB edit + fsync in a 64 MB file (re-chunking the chunk around it; the foreground
// cost is BenchmarkEditFsyncPhases).
func BenchmarkCompactEdit(b *testing.B) {
	e := newEnv(b)
	e.opts.CommitDelay = time.Hour
	e.opts.CompactDelay = -1
	f := e.open()
	ino := writeFile(b, f, "/big", randBytes(64<<20))
	ok(b, f.Sync(ctx()))
	h := must(f.OpenFile(ino, os.O_RDWR))
	defer h.Release()
	buf := randBytes(4096)
	var compact time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		buf[0] = byte(i)
		must(h.WriteAt(buf, int64(i*7919*4096)%(64<<20-4096)))
		ok(b, h.Fsync(ctx()))
		b.StartTimer()
		t0 := time.Now()
		retry, err := f.compactIno(ctx(), ino)
		ok(b, err)
		compact += time.Since(t0)
		if retry || inodeOf(b, f, ino).Ref.Pieces() != 0 {
			b.Fatal("not compacted")
		}
	}
	b.ReportMetric(float64(compact.Microseconds())/1000/float64(b.N), "compact-ms/op")
}

// TestCompactAfterRemount: a file left with pieces at unmount is compacted after the next
// mount (the mark in the local state).
func TestCompactAfterRemount(t *testing.T) {
	e := newEnv(t)
	e.opts.CompactDelay = -1 // not in this mount
	f := e.open()
	data := randBytes(5 << 20)
	ino := writeFile(t, f, "/r", data)
	ok(t, f.Sync(ctx()))
	h := openRW(t, f, "/r", 0)
	must(h.WriteAt([]byte("edited"), 2<<20))
	copy(data[2<<20:], "edited")
	ok(t, h.Fsync(ctx()))
	ok(t, h.Release())
	if inodeOf(t, f, ino).Ref.Pieces() == 0 {
		t.Fatal("no pieces")
	}
	ok(t, f.Close())
	e.opts.CompactDelay = time.Millisecond
	f = e.open()
	deadline := time.Now().Add(60 * time.Second)
	for inodeOf(t, f, ino).Ref.Pieces() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not compacted after the remount: %v", inodeOf(t, f, ino).Ref)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with the deadline above
	}
	if got := readFile(t, f, "/r"); !bytes.Equal(got, data) || !equalInts(contentSizes(inodeOf(t, f, ino).Ref), f.chunker.Split(data)) {
		t.Fatal("compacted file differs")
	}
	var marked bool
	ok(t, f.view(func(tx *bolt.Tx) error {
		marked = tx.Bucket(bMeta).Get(compactKey(ino)) != nil
		return nil
	}))
	if marked {
		t.Fatal("mark left after compaction")
	}
}

// TestMaxPieces: edits that would take a list past maxPieces re-chunk it instead (no pieces
// left), and the bytes stay right throughout.
func TestMaxPieces(t *testing.T) {
	defer func(n int) { maxPieces = n }(maxPieces)
	maxPieces = 7
	e := newEnv(t)
	e.opts.CompactDelay = -1
	f := e.open()
	data := randBytes(12 << 20)
	ino := writeFile(t, f, "/m", data)
	ok(t, f.Sync(ctx()))
	h := openRW(t, f, "/m", 0)
	defer h.Release()
	rechunked := false
	for i := range 8 {
		off := (i*1_500_007 + 12345) % (len(data) - 100)
		p := randBytes(100)
		must(h.WriteAt(p, int64(off)))
		copy(data[off:], p)
		ok(t, h.Fsync(ctx()))
		c := inodeOf(t, f, ino).Ref
		if c.Pieces() > maxPieces {
			t.Fatalf("edit %d: %d pieces", i, c.Pieces())
		}
		if i > 0 && c.Pieces() == 0 {
			rechunked = true
			if !equalInts(contentSizes(c), f.chunker.Split(data)) {
				t.Fatalf("edit %d: re-chunked list is not the chunking of the bytes", i)
			}
		}
		if got := readAllHandle(t, h); !bytes.Equal(got, data) {
			t.Fatalf("edit %d: bytes differ at %d", i, firstDiff(got, data))
		}
	}
	if !rechunked {
		t.Fatal("never re-chunked at the piece limit")
	}
}

// TestRekeyPieces: rekey --content reads a file through its pieces and re-chunks it under
// the new keys (it settles: no pieces).
func TestRekeyPieces(t *testing.T) {
	e := newEnv(t)
	e.opts.CompactDelay = -1
	f := e.open()
	data := randBytes(9 << 20)
	writeFile(t, f, "/p", data)
	ok(t, f.Sync(ctx()))
	h := openRW(t, f, "/p", 0)
	for _, off := range []int{100, 5 << 20} {
		must(h.WriteAt([]byte("piece"), int64(off)))
		copy(data[off:], "piece")
	}
	ok(t, h.Fsync(ctx()))
	ok(t, h.Release())
	if inodeOf(t, f, must(f.Resolve("/p"))).Ref.Pieces() == 0 {
		t.Fatal("no pieces")
	}
	ok(t, f.Close())
	next := nextKeys(e.keys)
	_, err := Rekey(ctx(), e.store, e.keys, next, RekeyOptions{Content: true, Device: "rekeyer",
		Switch: func(context.Context, uint64, dedup.Locator) error { return nil }})
	ok(t, err)
	e2 := *e
	e2.keys, e2.cache = next, filepath.Join(t.TempDir(), "fresh")
	f = e2.open()
	c := inodeOf(t, f, must(f.Resolve("/p"))).Ref
	if got := readFile(t, f, "/p"); !bytes.Equal(got, data) {
		t.Fatalf("after rekey --content: bytes differ at %d", firstDiff(got, data))
	}
	if c.Pieces() != 0 || !equalInts(contentSizes(c), f.chunker.Split(data)) {
		t.Fatalf("after rekey --content: %v", c)
	}
}

// TestPiecesMerge: another device merges a list with pieces and reads it; its own edit over
// them patches again, and the first device merges that back and compacts it.
func TestPiecesMerge(t *testing.T) {
	e := newEnv(t)
	e.opts.RefreshInterval = -1
	e.opts.CompactDelay = -1
	f := e.device("a").open()
	data := randBytes(7 << 20)
	writeFile(t, f, "/db", data)
	ok(t, f.Sync(ctx()))
	g := e.device("b").open()
	h := openRW(t, f, "/db", 0)
	must(h.WriteAt([]byte("from a"), 3<<20))
	copy(data[3<<20:], "from a")
	ok(t, h.Fsync(ctx()))
	ok(t, h.Release())
	ok(t, g.Refresh(ctx()))
	if c := inodeOf(t, g, must(g.Resolve("/db"))).Ref; c.Pieces() == 0 {
		t.Fatalf("b merged %v, want the pieces of a", c)
	}
	if got := readFile(t, g, "/db"); !bytes.Equal(got, data) {
		t.Fatalf("b reads a's edit wrong at %d", firstDiff(got, data))
	}
	hb := openRW(t, g, "/db", 0)
	must(hb.WriteAt([]byte("from b"), 6<<20))
	copy(data[6<<20:], "from b")
	ok(t, hb.Fsync(ctx()))
	ok(t, hb.Release())
	ok(t, f.Refresh(ctx()))
	ino := must(f.Resolve("/db"))
	if got := readFile(t, f, "/db"); !bytes.Equal(got, data) {
		t.Fatalf("a reads b's edit wrong at %d", firstDiff(got, data))
	}
	if retry, err := f.compactIno(ctx(), ino); err != nil || retry {
		t.Fatalf("compaction: retry %v, %v", retry, err)
	}
	if c := inodeOf(t, f, ino).Ref; c.Pieces() != 0 || !equalInts(contentSizes(c), f.chunker.Split(data)) {
		t.Fatalf("a compacted b's pieces to %v", c)
	}
	ok(t, f.Sync(ctx()))
	ok(t, g.Refresh(ctx()))
	if got := readFile(t, g, "/db"); !bytes.Equal(got, data) {
		t.Fatal("b reads the compacted file wrong")
	}
}
