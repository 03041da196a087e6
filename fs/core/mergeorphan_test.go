package core

import (
	"os"
	"strings"
	"testing"
)

// A file open for writing here that a merge deletes (another device deleted it) and that is
// written after the merge: the close acknowledged that version, so it survives, at its old
// path when free, else as a conflict copy, in the root directory when its directory is gone
// (docs/core.md, "Several devices").
func TestMergedDeleteThenWrite(t *testing.T) {
	for _, tc := range []struct {
		name, dir string
		taken     bool   // device a makes a new file at the path after the delete
		rmdir     bool   // device a deletes the directory too
		kill      bool   // device b is killed after the close
		fsync     bool   // device b acknowledges with fsync, not close
		in        string // the directory that must hold it ("" = the root)
		wantName  string // the name, or a prefix "photo (conflict b "
	}{
		{name: "free", wantName: "photo.jpg"},
		{name: "taken", taken: true, wantName: "photo (conflict b "},
		{name: "dirgone", dir: "/album", rmdir: true, wantName: "photo.jpg"},
		{name: "indir", dir: "/album", in: "/album", wantName: "photo.jpg"},
		{name: "fsync", fsync: true, wantName: "photo.jpg"},
		{name: "kill", kill: true, wantName: "photo.jpg"},
		{name: "kill-taken", kill: true, taken: true, wantName: "photo (conflict b "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.opts.RefreshInterval = -1
			a := e.device("a").open()
			if tc.dir != "" {
				must(a.Mkdir(RootIno, strings.TrimPrefix(tc.dir, "/"), 0o755))
			}
			p := tc.dir + "/photo.jpg"
			writeFile(t, a, p, []byte("v1"))
			ok(t, a.Sync(ctx()))
			eb := e.device("b")
			b := eb.open()
			h, err := b.OpenFile(must(b.Resolve(p)), os.O_WRONLY|os.O_APPEND)
			ok(t, err)
			ok(t, a.Remove(must(a.Resolve(tc.dir+"/")), "photo.jpg", false))
			if tc.rmdir {
				ok(t, a.Remove(RootIno, strings.TrimPrefix(tc.dir, "/"), true))
			}
			if tc.taken {
				writeFile(t, a, "/photo.jpg", []byte("other"))
			}
			ok(t, a.Sync(ctx()))
			ok(t, b.Refresh(ctx())) // the file is open on b: the merge unlinks it
			_, err = h.WriteAt([]byte("+b"), 0)
			ok(t, err)
			if tc.fsync {
				ok(t, h.Fsync(ctx()))
			} else {
				ok(t, h.Flush()) // close(2) returned 0: "v1+b" is acknowledged
			}
			if tc.kill {
				b.crash()
				b = eb.open()
			} else {
				ok(t, h.Release())
			}
			ok(t, b.Sync(ctx()))
			for _, f := range []*FS{b, e.device("fresh").open()} {
				var got []string
				found := false
				for _, de := range must(f.ReadDir(must(f.Resolve(tc.in + "/")))) {
					got = append(got, de.Name)
					if strings.HasPrefix(de.Name, tc.wantName) && string(readFile(t, f, tc.in+"/"+de.Name)) == "v1+b" {
						found = true
					}
				}
				if !found {
					t.Fatalf("no file %s/%s* holds b's acknowledged \"v1+b\"; that directory: %q", tc.in, tc.wantName, got)
				}
				if tc.taken {
					if d := readFile(t, f, "/photo.jpg"); string(d) != "other" {
						t.Fatalf("/photo.jpg = %q, want a's \"other\"", d)
					}
				}
			}
		})
	}
}

// Open for writing but not written after the merge deleted it: nothing was acknowledged
// since, so the delete stands (the last close deletes the file, as for a reader).
func TestMergedDeleteOpenForWriteUnwritten(t *testing.T) {
	e := newEnv(t)
	e.opts.RefreshInterval = -1
	a := e.device("a").open()
	writeFile(t, a, "/photo.jpg", []byte("v1"))
	ok(t, a.Sync(ctx()))
	b := e.device("b").open()
	h, err := b.OpenFile(must(b.Resolve("/photo.jpg")), os.O_RDWR)
	ok(t, err)
	ok(t, a.Remove(RootIno, "photo.jpg", false))
	ok(t, a.Sync(ctx()))
	ok(t, b.Refresh(ctx()))
	ok(t, h.Flush())
	ok(t, h.Release())
	ok(t, b.Sync(ctx()))
	if w := b.localWork(); w != "" {
		t.Fatalf("after the last close and a sync, b reports local work: %s", w)
	}
	for _, f := range []*FS{b, e.device("fresh").open()} {
		if got := listTree(t, f); len(got) != 0 {
			t.Fatalf("tree %q, want the delete to stand", got)
		}
	}
}
