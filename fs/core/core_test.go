package core

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:8]) }

func TestNamespace(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	d := must(f.Mkdir(RootIno, "photos", 0o755))
	if !d.Mode.IsDir() || d.Nlink != 2 {
		t.Fatalf("mkdir attr %+v", d)
	}
	_, err := f.Mkdir(RootIno, "photos", 0o755)
	wantErr(t, err, syscall.EEXIST)
	_, err = f.Lookup(RootIno, "nope")
	wantErr(t, err, syscall.ENOENT)
	_, err = f.Mkdir(RootIno, "a/b", 0o755)
	wantErr(t, err, syscall.EINVAL)

	ino := writeFile(t, f, "/photos/a.jpg", []byte("hello"))
	_, err = f.Lookup(ino, "x")
	wantErr(t, err, syscall.ENOTDIR)
	_, _, err = f.Create(d.Ino, "a.jpg", 0o644, true)
	wantErr(t, err, syscall.EEXIST)
	_, err = f.OpenFile(d.Ino, os.O_RDONLY)
	wantErr(t, err, syscall.EISDIR)
	wantErr(t, f.Remove(RootIno, "photos", true), syscall.ENOTEMPTY)
	wantErr(t, f.Remove(RootIno, "photos", false), syscall.EISDIR)
	wantErr(t, f.Remove(d.Ino, "a.jpg", true), syscall.ENOTDIR)

	// symlink, hard link
	s := must(f.Symlink(d.Ino, "link", "a.jpg"))
	if got := must(f.Readlink(s.Ino)); got != "a.jpg" {
		t.Fatal(got)
	}
	l := must(f.Link(ino, RootIno, "hard.jpg"))
	if l.Nlink != 2 {
		t.Fatalf("nlink %d", l.Nlink)
	}
	_, err = f.Link(d.Ino, RootIno, "dirlink")
	wantErr(t, err, syscall.EPERM)
	if got := string(readFile(t, f, "/hard.jpg")); got != "hello" {
		t.Fatal(got)
	}
	ok(t, f.Remove(d.Ino, "a.jpg", false))
	if a := must(f.GetAttr(ino)); a.Nlink != 1 {
		t.Fatalf("nlink after unlink %d", a.Nlink)
	}
	if p := must(f.Path(ino)); p != "/hard.jpg" {
		t.Fatalf("path %q", p)
	}

	// rename over an existing file, rename of a directory, into itself
	writeFile(t, f, "/photos/b.jpg", []byte("bbb"))
	writeFile(t, f, "/photos/c.jpg", []byte("ccc"))
	ok(t, f.Rename(d.Ino, "b.jpg", d.Ino, "c.jpg"))
	if got := string(readFile(t, f, "/photos/c.jpg")); got != "bbb" {
		t.Fatal(got)
	}
	_, err = f.Lookup(d.Ino, "b.jpg")
	wantErr(t, err, syscall.ENOENT)
	sub := must(f.Mkdir(d.Ino, "sub", 0o700))
	wantErr(t, f.Rename(RootIno, "photos", sub.Ino, "x"), syscall.EINVAL)
	ok(t, f.Rename(RootIno, "photos", RootIno, "pics"))
	if got := string(readFile(t, f, "/pics/c.jpg")); got != "bbb" {
		t.Fatal(got)
	}
	if p := must(f.Path(sub.Ino)); p != "/pics/sub" {
		t.Fatal(p)
	}
	// dir over empty dir, dir over non-empty dir, file over dir
	e2 := must(f.Mkdir(RootIno, "empty", 0o755))
	_ = e2
	wantErr(t, f.Rename(RootIno, "hard.jpg", RootIno, "empty"), syscall.EISDIR)
	wantErr(t, f.Rename(RootIno, "empty", RootIno, "hard.jpg"), syscall.ENOTDIR)
	wantErr(t, f.Rename(RootIno, "empty", RootIno, "pics"), syscall.ENOTEMPTY)
	ok(t, f.Rename(d.Ino, "sub", RootIno, "empty"))
	if a := must(f.GetAttr(RootIno)); a.Nlink != 4 { // ., .., pics, empty(=sub)
		t.Fatalf("root nlink %d", a.Nlink)
	}
	if a := must(f.GetAttr(d.Ino)); a.Nlink != 2 {
		t.Fatalf("pics nlink %d", a.Nlink)
	}

	// setattr
	m := os.FileMode(0o600)
	uid := uint32(1234)
	mt := time.Unix(1_600_000_000, 5)
	a := must(f.SetAttr(ino, SetAttrRequest{Mode: &m, Uid: &uid, Mtime: &mt}))
	if a.Mode != 0o600 || a.Uid != 1234 || !a.Mtime.Equal(mt) {
		t.Fatalf("setattr %+v", a)
	}
	sz := int64(2)
	a = must(f.SetAttr(ino, SetAttrRequest{Size: &sz}))
	if a.Size != 2 || string(readFile(t, f, "/hard.jpg")) != "he" {
		t.Fatalf("truncate: %+v", a)
	}
	sz = 70000
	must(f.SetAttr(ino, SetAttrRequest{Size: &sz}))
	got := readFile(t, f, "/hard.jpg")
	if len(got) != 70000 || string(got[:2]) != "he" || !allZero(got[2:]) {
		t.Fatalf("extend: len %d", len(got))
	}
	_, err = f.SetAttr(d.Ino, SetAttrRequest{Size: &sz})
	wantErr(t, err, syscall.EISDIR)

	// xattrs
	ok(t, f.SetXattr(ino, "user.a", []byte("1"), 0))
	wantErr(t, f.SetXattr(ino, "user.a", []byte("2"), 1), syscall.EEXIST)
	wantErr(t, f.SetXattr(ino, "user.b", []byte("2"), 2), syscall.ENODATA)
	_, err = f.GetXattr(ino, "user.b")
	wantErr(t, err, syscall.ENODATA)
	if v := must(f.GetXattr(ino, "user.a")); string(v) != "1" {
		t.Fatal(string(v))
	}
	if names := must(f.ListXattr(ino)); !reflect.DeepEqual(names, []string{"user.a"}) {
		t.Fatal(names)
	}
	ok(t, f.RemoveXattr(ino, "user.a"))
	wantErr(t, f.RemoveXattr(ino, "user.a"), syscall.ENODATA)
}

func TestRoundTripReopen(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	sizes := []int{0, 1, 15, 16, 17, spoolBlock - 1, spoolBlock, spoolBlock + 1, 3*spoolBlock + 7, 1 << 20}
	files := map[string][]byte{}
	must(f.Mkdir(RootIno, "d", 0o755))
	for i, n := range sizes {
		p := "/d/f" + string(rune('a'+i))
		files[p] = randBytes(n)
		writeFile(t, f, p, files[p])
	}
	must(f.Symlink(RootIno, "sl", "d/fa"))
	ino := must(f.Resolve("/d/fb"))
	ok(t, f.SetXattr(ino, "user.tag", []byte("cat"), 0))
	ok(t, f.PutAux("emb", []byte("k1"), []byte("v1")))
	for p, want := range files { // reads from the spool or the sealed object
		if got := readFile(t, f, p); !bytes.Equal(got, want) {
			t.Fatalf("%s: bytes differ", p)
		}
	}
	ok(t, f.Sync(ctx()))
	st := f.Status()
	if st.PendingSeals != 0 || st.PendingCommit || st.Files != int64(len(sizes)) || st.Dirs != 2 {
		t.Fatalf("status %+v", st)
	}
	before := listTree(t, f)
	ok(t, f.Close())

	// Same cache.
	f = e.open()
	if got := listTree(t, f); !reflect.DeepEqual(got, before) {
		t.Fatalf("same cache:\n%v\nwant\n%v", got, before)
	}
	ok(t, f.Close())

	// Empty cache: rebuilt from the store.
	e.cache = t.TempDir()
	f = e.open()
	if got := listTree(t, f); !reflect.DeepEqual(got, before) {
		t.Fatalf("empty cache:\n%v\nwant\n%v", got, before)
	}
	if v := must(f.GetXattr(must(f.Resolve("/d/fb")), "user.tag")); string(v) != "cat" {
		t.Fatal(string(v))
	}
	if v := must(f.GetAux("emb", []byte("k1"))); string(v) != "v1" {
		t.Fatal(string(v))
	}
	_, err := f.GetAux("emb", []byte("k2"))
	wantErr(t, err, syscall.ENOENT)
	for p, want := range files {
		if got := readFile(t, f, p); !bytes.Equal(got, want) {
			t.Fatalf("%s: bytes differ after rebuild", p)
		}
	}
	// Writes on top of the rebuilt copy work and commit.
	writeFile(t, f, "/new", []byte("new"))
	ok(t, f.Sync(ctx()))
	ok(t, f.Close())
	e.cache = t.TempDir()
	f = e.open()
	if got := string(readFile(t, f, "/new")); got != "new" {
		t.Fatal(got)
	}
}

func TestBackgroundSealAndCommit(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	data := randBytes(300_000)
	writeFile(t, f, "/x", data)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := f.Status()
		if st.PendingSeals == 0 && !st.PendingCommit && st.ContentObjects == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background work did not finish: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Without Close: a second client with an empty cache (read-only) sees the file.
	e2 := *e
	e2.cache = t.TempDir()
	e2.opts.ReadOnly = true
	g := e2.open()
	if got := readFile(t, g, "/x"); !bytes.Equal(got, data) {
		t.Fatal("read-only client: bytes differ")
	}
	_, err := g.Mkdir(RootIno, "no", 0o755)
	wantErr(t, err, syscall.EROFS)
}

func TestPartialOverwriteAndAppend(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	data := randBytes(200_000)
	ino := writeFile(t, f, "/p", data)
	ok(t, f.Sync(ctx()))
	h := must(f.OpenFile(ino, os.O_RDWR))
	patch := []byte("PATCH")
	must(h.WriteAt(patch, 100_000))
	copy(data[100_000:], patch)
	// Another handle sees the unflushed write.
	h2 := must(f.OpenFile(ino, os.O_RDONLY))
	if got := readAllHandle(t, h2); !bytes.Equal(got, data) {
		t.Fatal("second handle does not see the write")
	}
	ok(t, h2.Release())
	ok(t, h.Release())
	ha := must(f.OpenFile(ino, os.O_WRONLY|os.O_APPEND))
	must(ha.WriteAt([]byte("tail"), 0))
	ok(t, ha.Release())
	data = append(data, "tail"...)
	if got := readFile(t, f, "/p"); !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	if a := must(f.GetAttr(ino)); a.Size != int64(len(data)) {
		t.Fatal(a.Size)
	}
	ok(t, f.Sync(ctx()))
	ok(t, f.Close())
	e.cache = t.TempDir()
	f = e.open()
	if got := readFile(t, f, "/p"); !bytes.Equal(got, data) {
		t.Fatal("bytes differ after rebuild")
	}
}

func TestUnlinkWhileOpen(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	_, h, err := f.Create(RootIno, "tmp", 0o644, true)
	ok(t, err)
	must(h.WriteAt([]byte("still here"), 0))
	ok(t, f.Remove(RootIno, "tmp", false))
	_, err = f.Lookup(RootIno, "tmp")
	wantErr(t, err, syscall.ENOENT)
	must(h.WriteAt([]byte("!"), 10))
	ok(t, h.Flush())
	if got := string(readAllHandle(t, h)); got != "still here!" {
		t.Fatal(got)
	}
	ino := h.Ino()
	ok(t, h.Release())
	_, err = f.GetAttr(ino)
	wantErr(t, err, syscall.ENOENT)
	// Rename over an open file: the old handle keeps reading the old bytes.
	writeFile(t, f, "/a", []byte("old"))
	writeFile(t, f, "/b", []byte("new"))
	ha := must(f.OpenFile(must(f.Resolve("/a")), os.O_RDONLY))
	ok(t, f.Rename(RootIno, "b", RootIno, "a"))
	if got := string(readAllHandle(t, ha)); got != "old" {
		t.Fatal(got)
	}
	ok(t, ha.Release())
	if got := string(readFile(t, f, "/a")); got != "new" {
		t.Fatal(got)
	}
	ok(t, f.Sync(ctx()))
	if n := usedSpoolFiles(t, f); n != 0 {
		t.Fatalf("%d spool files with data left", n)
	}
	if strings.Contains(listTree(t, f)[0], "tmp") {
		t.Fatal("tmp listed")
	}
}

// A read-only client catches up with a writer's newer roots at its next Open.
func TestReadOnlyCatchesUp(t *testing.T) {
	e := newEnv(t)
	ro := *e
	ro.cache = t.TempDir()
	ro.opts.ReadOnly = true
	g := ro.open() // before the writer's first root: an empty tree
	ok(t, g.Close())
	f := e.open()
	writeFile(t, f, "/x", []byte("x1"))
	ok(t, f.Sync(ctx()))
	g = ro.open()
	if got := string(readFile(t, g, "/x")); got != "x1" {
		t.Fatal(got)
	}
	ok(t, g.Close())
	writeFile(t, f, "/x", []byte("x2"))
	ok(t, f.Sync(ctx()))
	g = ro.open()
	if got := string(readFile(t, g, "/x")); got != "x2" {
		t.Fatal(got)
	}
}

// The namespace is committed in shards of shardSize inodes: a change rewrites one shard.
func TestShardedCommit(t *testing.T) {
	e := newEnv(t)
	e.opts.CommitDelay = time.Hour // only Sync commits
	f := e.open()
	d := must(f.Mkdir(RootIno, "many", 0o755))
	for i := 0; i < shardSize+100; i++ {
		_, h, err := f.Create(d.Ino, "f"+itoa(i), 0o644, true)
		ok(t, err)
		ok(t, h.Release())
	}
	ok(t, f.Sync(ctx()))
	before := countObjects(t, e.store, "m/")
	// A file in the second shard: its inode and its dirent are there; "many" (shard 0)
	// changes only when names change, not when a file's content does.
	writeFile(t, f, "/many/f"+itoa(shardSize+50), []byte("data"))
	ok(t, f.Sync(ctx()))
	if n := countObjects(t, e.store, "m/"); n != before+1 {
		t.Fatalf("meta objects %d -> %d, want one rewritten shard", before, n)
	}
	// Remove every file of the second shard: it leaves the root.
	for i := shardSize - 10; i < shardSize+100; i++ {
		ok(t, f.Remove(d.Ino, "f"+itoa(i), false))
	}
	ok(t, f.Sync(ctx()))
	want := listTree(t, f)
	ok(t, f.Close())
	e.cache = t.TempDir()
	f = e.open()
	if got := listTree(t, f); !reflect.DeepEqual(got, want) {
		t.Fatalf("rebuilt tree differs: %d vs %d entries", len(got), len(want))
	}
	r, _, err := f.loadRoot(ctx(), f.anchorSeq())
	ok(t, err)
	// The root directory's shard and the first shard of this cache's inode range
	// (docs/core.md, "Several devices": each cache allocates in its own range).
	if len(r.Shards) != 2 {
		t.Fatalf("%d shards in the root, want 2", len(r.Shards))
	}
}

func TestCacheOfAnotherVaultRefused(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	ok(t, f.Close())
	other := newEnv(t)
	opts := other.opts
	opts.CacheDir = e.cache
	_, err := Open(ctx(), other.store, other.keys, opts)
	if err == nil || !strings.Contains(err.Error(), "another vault") {
		t.Fatalf("cache of another vault: %v", err)
	}
}
