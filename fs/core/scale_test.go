package core

import (
	"syscall"
	"testing"
	"time"
)

// Pending reports what Status reports of the pending work (seals, commit), with all the
// totals zero: files sealed but not committed, then nothing after Sync.
func TestPending(t *testing.T) {
	e := newEnv(t)
	e.opts.CommitDelay = time.Hour
	f := e.open()
	writeFile(t, f, "/a", randBytes(70_000))
	ok(t, f.Mkdir2(t, "/d"))
	st, p := f.Status(), f.Pending() // seals may finish in between: p's count is not above st's
	if !p.PendingCommit || !st.PendingCommit || p.PendingSeals > st.PendingSeals {
		t.Fatalf("before sync: pending %+v, status %+v", p, st)
	}
	if p.Files != 0 || p.Dirs != 0 || p.LogicalBytes != 0 || p.StoredBytes != 0 || p.ContentObjects != 0 {
		t.Fatalf("pending has totals: %+v", p)
	}
	ok(t, f.Sync(ctx()))
	if p := f.Pending(); p != (Status{}) {
		t.Fatalf("after sync: pending %+v", p)
	}
	if st := f.Status(); st.Files != 1 || st.Dirs != 2 || st.PendingCommit {
		t.Fatalf("after sync: status %+v", st)
	}
}

// Lookup reads the parent's inode on a miss only, and GetXattr does not decrypt the inode:
// the errnos stay those of the full checks (docs/scale.md).
func TestLookupAndXattrErrnos(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	ok(t, f.Mkdir2(t, "/d"))
	ino := writeFile(t, f, "/d/a.jpg", []byte("x"))
	d := must(f.Resolve("/d"))
	if a := must(f.Lookup(d, "a.jpg")); a.Ino != ino {
		t.Fatalf("lookup gave inode %d, want %d", a.Ino, ino)
	}
	_, err := f.Lookup(d, "missing")
	wantErr(t, err, syscall.ENOENT)
	_, err = f.Lookup(ino, "a.jpg")
	wantErr(t, err, syscall.ENOTDIR)
	_, err = f.Lookup(Ino(1<<40), "a.jpg")
	wantErr(t, err, syscall.ENOENT)
	_, err = f.GetXattr(ino, "security.selinux")
	wantErr(t, err, syscall.ENODATA)
	ok(t, f.Remove(d, "a.jpg", false))
	_, err = f.GetXattr(ino, "security.selinux")
	wantErr(t, err, syscall.ENOENT)
	ok(t, f.Remove(RootIno, "d", true))
	_, err = f.Lookup(d, "a.jpg")
	wantErr(t, err, syscall.ENOENT)
}
