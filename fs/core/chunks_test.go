package core

import (
	"bytes"
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
)

// countStore counts content Puts and Gets and hides the local store's path, so reads go
// through the read cache as with S3.
type countStore struct {
	backend.Store
	puts, gets atomic.Int64
}

func (s *countStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if strings.HasPrefix(name, "c/") {
		s.puts.Add(1)
	}
	return s.Store.Put(ctx, name, r, size)
}

func (s *countStore) Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if strings.HasPrefix(name, "c/") {
		s.gets.Add(1)
	}
	return s.Store.Get(ctx, name, off, n)
}

func inodeOf(t testing.TB, f *FS, ino Ino) inode {
	t.Helper()
	var n inode
	ok(t, f.view(func(tx *bolt.Tx) error {
		var err error
		n, err = f.getInode(tx, ino)
		return err
	}))
	return n
}

func openRW(t testing.TB, f *FS, path string, flags int) *Handle {
	t.Helper()
	h, err := f.OpenFile(must(f.Resolve(path)), os.O_RDWR|flags)
	ok(t, err)
	return h
}

// TestChunkedEdits: a file is a chunk list cut by the chunker; a 4 KiB edit and a 1 MB
// append each upload one patch object (pieces, docs/format.md §11.4), and compaction gives
// the list chunking from scratch gives; a ranged read from a fresh cache fetches one
// chunk; truncations keep the right bytes.
func TestChunkedEdits(t *testing.T) {
	e := newEnv(t)
	cs := &countStore{Store: e.store}
	e.store = cs
	f := e.open()
	data := randBytes(30 << 20)
	ino := writeFile(t, f, "/big", data)
	ok(t, f.Sync(ctx()))
	n := inodeOf(t, f, ino)
	want := f.chunker.Split(data)
	if n.Ref.Len() != len(want) || n.Ref.Len() < 3 || n.Ref.Size() != int64(len(data)) {
		t.Fatalf("%d chunks of %d bytes, want %d", n.Ref.Len(), n.Ref.Size(), len(want))
	}
	for i, w := range want {
		if n.Ref.ChunkSize(i) != int64(w) {
			t.Fatalf("chunk %d: %d bytes, chunker says %d", i, n.Ref.ChunkSize(i), w)
		}
	}

	// 4 KiB in place + fsync: the chunk around it (and at most one more).
	h := openRW(t, f, "/big", 0)
	patch := randBytes(4096)
	puts := cs.puts.Load()
	_, err := h.WriteAt(patch, 15<<20)
	ok(t, err)
	ok(t, h.Fsync(ctx()))
	copy(data[15<<20:], patch)
	if d := cs.puts.Load() - puts; d != 1 {
		t.Errorf("4 KiB edit uploaded %d objects", d)
	}
	if c := inodeOf(t, f, ino).Ref; c.Pieces() < 2 || c.Pieces() > 3 || c.Len()-c.Pieces() < len(want)-2 {
		t.Errorf("after a 4 KiB edit: %v (chunking gives %d chunks), want 2-3 pieces in place of 1-2 chunks", c, len(want))
	}
	// A second edit after the fsync starts from the sealed list (nothing copied).
	puts = cs.puts.Load()
	_, err = h.WriteAt(patch, 2<<20)
	ok(t, err)
	ok(t, h.Fsync(ctx()))
	copy(data[2<<20:], patch)
	if d := cs.puts.Load() - puts; d != 1 {
		t.Errorf("second 4 KiB edit uploaded %d objects", d)
	}
	ok(t, h.Flush())
	ok(t, h.Release())

	// Append 1 MB: the last chunk and what follows.
	h = openRW(t, f, "/big", os.O_APPEND)
	more := randBytes(1 << 20)
	puts = cs.puts.Load()
	_, err = h.WriteAt(more, 0)
	ok(t, err)
	ok(t, h.Fsync(ctx()))
	ok(t, h.Release())
	data = append(data, more...)
	if d := cs.puts.Load() - puts; d != 1 {
		t.Errorf("1 MB append uploaded %d objects", d)
	}
	if got := readFile(t, f, "/big"); !bytes.Equal(got, data) {
		t.Fatal("bytes differ after the edits")
	}
	ok(t, f.compactNow(ctx()))
	if got := readFile(t, f, "/big"); !bytes.Equal(got, data) {
		t.Fatal("bytes differ after compaction")
	}
	if c := inodeOf(t, f, ino).Ref; !equalInts(contentSizes(c), f.chunker.Split(data)) {
		t.Fatalf("after edits the list is %v, chunking from scratch gives %v", contentSizes(c), f.chunker.Split(data))
	}

	// Shrink, then grow with zeros.
	sz := int64(10<<20 + 7)
	_, err = f.SetAttr(ino, SetAttrRequest{Size: &sz})
	ok(t, err)
	sz2 := int64(12 << 20)
	_, err = f.SetAttr(ino, SetAttrRequest{Size: &sz2})
	ok(t, err)
	data = append(data[:sz], make([]byte, sz2-sz)...)
	ok(t, f.Sync(ctx()))
	if got := readFile(t, f, "/big"); !bytes.Equal(got, data) {
		t.Fatal("bytes differ after truncations")
	}
	ok(t, f.Close())

	// A fresh cache: a 4 KiB read fetches only the chunk that holds it.
	e.cache = t.TempDir()
	f = e.open()
	h, err = f.OpenFile(must(f.Resolve("/big")), os.O_RDONLY)
	ok(t, err)
	gets := cs.gets.Load()
	buf := make([]byte, 4096)
	_, err = h.ReadAt(buf, 11<<20)
	ok(t, err)
	if d := cs.gets.Load() - gets; d != 1 {
		t.Errorf("a 4 KiB read fetched %d chunks", d)
	}
	if !bytes.Equal(buf, data[11<<20:11<<20+4096]) {
		t.Fatal("ranged read differs")
	}
	ok(t, h.Release())
	if got := readFile(t, f, "/big"); !bytes.Equal(got, data) {
		t.Fatal("bytes differ from a fresh cache")
	}
}

func contentSizes(c dedup.Content) []int {
	var out []int
	for i := range c.Len() {
		out = append(out, int(c.ChunkSize(i)))
	}
	return out
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestChunkedModel: random writes, truncations, closes, fsyncs and reopenings of a file of
// a few chunks agree with a byte slice; after each Sync the chunk list is what chunking the
// bytes from scratch gives (the resync after an edit is exact).
func TestChunkedModel(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	r := mrand.New(mrand.NewPCG(uint64(len(t.Name())), 7))
	model := randBytes(5 << 20)
	ino := writeFile(t, f, "/m", model)
	var h *Handle
	for step := 0; step < 40; step++ {
		if h == nil {
			h = openRW(t, f, "/m", 0)
		}
		switch op := r.IntN(10); {
		case op < 5: // write, sometimes past the end
			off := r.Int64N(int64(len(model)) + 100_000)
			p := randBytes(1 + r.IntN(300_000))
			_, err := h.WriteAt(p, off)
			ok(t, err)
			if end := off + int64(len(p)); end > int64(len(model)) {
				model = append(model, make([]byte, end-int64(len(model)))...)
			}
			copy(model[off:], p)
		case op == 5: // truncate
			sz := r.Int64N(int64(len(model)) + 2<<20)
			_, err := f.SetAttr(ino, SetAttrRequest{Size: &sz})
			ok(t, err)
			if sz < int64(len(model)) {
				model = model[:sz]
			} else {
				model = append(model, make([]byte, sz-int64(len(model)))...)
			}
		case op == 6:
			ok(t, h.Flush())
		case op == 7:
			ok(t, h.Fsync(ctx()))
		case op == 8:
			ok(t, h.Flush())
			ok(t, h.Release())
			h = nil
		default:
			ok(t, h.Flush())
			ok(t, f.Sync(ctx()))
			ok(t, f.compactNow(ctx()))
			if c := inodeOf(t, f, ino).Ref; !equalInts(contentSizes(c), f.chunker.Split(model)) {
				t.Fatalf("step %d: list %v, from scratch %v", step, contentSizes(c), f.chunker.Split(model))
			}
		}
		if h != nil {
			got := readAllHandle(t, h)
			if !bytes.Equal(got, model) {
				t.Fatalf("step %d: %d bytes read, model has %d (first difference at %d)", step, len(got), len(model), firstDiff(got, model))
			}
		}
	}
	if h != nil {
		ok(t, h.Release())
	}
	ok(t, f.Sync(ctx()))
	ok(t, f.Close())
	e.cache = t.TempDir()
	f = e.open()
	if got := readFile(t, f, "/m"); !bytes.Equal(got, model) {
		t.Fatalf("fresh cache: bytes differ at %d", firstDiff(got, model))
	}
}

// TestChunkListRecords: known answers for the inode record of a two-chunk file (tag 2) and
// a v2 journal record; a one-chunk inode keeps the v1 layout (tag 1), and a v1 journal
// record still decodes.
func TestChunkListRecords(t *testing.T) {
	ti := sampleTree().Inodes
	one, two := ti[1].Node, ti[2].Node
	k1, k2 := strings.Repeat("01", 32), strings.Repeat("02", 32)
	loc := "07" + strings.Repeat("00", 31)
	if got, want := hexOf(encodeInodeRecord(&two)), "01a40300000180808003000000010276320002"+
		"02"+loc+k1+"80808002"+loc+k2+"8080800100"; got != want {
		t.Errorf("two-chunk inode record:\n got %s\nwant %s", got, want)
	}
	if got, want := hexOf(encodeInodeRecord(&one)), "01a403000001140000000105612e6a706700"+
		"01"+loc+k1+"1400"; got != want {
		t.Errorf("one-chunk inode record:\n got %s\nwant %s", got, want)
	}
	rec := pendingRec{Ino: 5, Size: 100, Base: two.Ref, BaseLen: 99}
	if got, want := hexOf(encodePending(rec)), "0205c801c601"+"02"+"02"+loc+k1+"80808002"+loc+k2+"80808001"; got != want {
		t.Errorf("journal record:\n got %s\nwant %s", got, want)
	}
	if p, err := decodePending([]byte{1, 5, 0xc8, 0x01}); err != nil || p != (pendingRec{Ino: 5, Size: 100}) {
		t.Errorf("v1 journal record: %+v %v", p, err)
	}
}

func hexOf(b []byte) string { return fmt.Sprintf("%x", b) }

// TestAllocate: fallocate mode 0 extends with zeros (and never shrinks), KEEP_SIZE changes
// nothing, a read-only handle gets EBADF.
func TestAllocate(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	data := randBytes(3 << 20)
	ino := writeFile(t, f, "/a", data)
	ok(t, f.Sync(ctx()))
	h := openRW(t, f, "/a", 0)
	ok(t, h.Allocate(0, 1000, false)) // inside: nothing changes
	ok(t, h.Allocate(5<<20, 4096, true))
	if a := must(f.GetAttr(ino)); a.Size != 3<<20 {
		t.Fatalf("size %d after in-file and KEEP_SIZE allocations", a.Size)
	}
	ok(t, h.Allocate(4<<20, 1<<20, false))
	ok(t, h.Flush())
	ok(t, h.Release())
	data = append(data, make([]byte, 2<<20)...)
	if a := must(f.GetAttr(ino)); a.Size != 5<<20 {
		t.Fatalf("size %d after fallocate to 5 MiB", a.Size)
	}
	ok(t, f.Sync(ctx()))
	if got := readFile(t, f, "/a"); !bytes.Equal(got, data) {
		t.Fatal("bytes differ after fallocate")
	}
	r, err := f.OpenFile(ino, os.O_RDONLY)
	ok(t, err)
	wantErr(t, r.Allocate(0, 1, false), syscall.EBADF)
	wantErr(t, openRW(t, f, "/a", 0).Allocate(-1, 1, false), syscall.EINVAL)
	ok(t, r.Release())
}

// TestChunkedScatteredEdits: edits in the first and the last chunk of a big file, then one
// fsync, store one patch object (holding both); compaction re-seals only those two chunks (the untouched ones between
// are kept, not sealed again).
func TestChunkedScatteredEdits(t *testing.T) {
	e := newEnv(t)
	cs := &countStore{Store: e.store}
	e.store = cs
	f := e.open()
	data := randBytes(40 << 20)
	ino := writeFile(t, f, "/db", data)
	ok(t, f.Sync(ctx()))
	before := inodeOf(t, f, ino).Ref
	h := openRW(t, f, "/db", 0)
	puts := cs.puts.Load()
	for _, off := range []int{100, len(data) - 5000} {
		p := randBytes(4096)
		_, err := h.WriteAt(p, int64(off))
		ok(t, err)
		copy(data[off:], p)
	}
	ok(t, h.Fsync(ctx()))
	ok(t, h.Release())
	if d := cs.puts.Load() - puts; d != 1 {
		t.Errorf("two 4 KiB edits and one fsync uploaded %d objects, want one patch object", d)
	}
	puts = cs.puts.Load()
	ok(t, f.compactNow(ctx()))
	after := inodeOf(t, f, ino).Ref
	if d := cs.puts.Load() - puts; d < 2 || d > 4 || after.Pieces() != 0 {
		t.Errorf("compaction uploaded %d chunks of %d, %d pieces left", d, after.Len(), after.Pieces())
	}
	kept := 0
	for i := 1; i < min(before.Len(), after.Len())-1; i++ {
		if before.ChunkLocator(i) == after.ChunkLocator(i) {
			kept++
		}
	}
	if before.Len() < 5 || kept < before.Len()-4 {
		t.Errorf("kept %d of %d middle chunks", kept, before.Len()-2)
	}
	if got := readFile(t, f, "/db"); !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
}
