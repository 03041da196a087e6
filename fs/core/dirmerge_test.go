package core

import (
	"strings"
	"testing"
	"time"
)

// A directory removed with its files (rm -rf) on a device that is offline, while the other
// devices moved that directory and overwrote a file in it (integration
// TestRandomDevicesMounted, s3 seed 3177). docs/core.md, "Several devices": delete against
// modify keeps the modified file, so the overwrite survives when the deleting device had
// not merged it; when it had (the version was in its view when it deleted it, even unread),
// the delete supersedes it.
func TestRemovedTreeAgainstOtherDevices(t *testing.T) {
	for _, merged := range []bool{false, true} {
		name := "overwrite-not-merged"
		if merged {
			name = "overwrite-merged-first"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.opts.RefreshInterval = -1
			c := e.device("c").open()
			ok(t, c.Mkdir2(t, "/m0"))
			ok(t, c.Mkdir2(t, "/d0"))
			writeFile(t, c, "/m0/img3.jpg", []byte("v45"))
			writeFile(t, c, "/m0/f24-y.png", []byte("v39"))
			ok(t, c.Sync(ctx()))

			// a commits only when asked: it goes offline with local work in m0.
			ea := e.device("a")
			ea.opts.CommitDelay = time.Hour
			a := ea.open()
			writeFile(t, a, "/m0/f17-notes.txt", []byte("v47"))

			ok(t, c.Rename(RootIno, "m0", must(c.Resolve("/d0")), "m1"))
			ok(t, c.Sync(ctx()))
			b := e.device("b").open()
			writeFile(t, b, "/d0/m1/img3.jpg", []byte("v51"))
			ok(t, b.Sync(ctx()))

			if merged {
				ok(t, a.Refresh(ctx()))
				if got := string(readFile(t, a, "/d0/m1/img3.jpg")); got != "v51" {
					t.Fatalf("a merged b's overwrite: img3.jpg = %q", got)
				}
			}
			// rm -rf of the directory on a, offline: every entry, then the directory.
			dir := "/m0"
			if merged {
				dir = "/d0/m1"
			}
			ino := must(a.Resolve(dir))
			for _, n := range names(t, a, dir) {
				ok(t, a.Remove(ino, n, false))
			}
			parent, base := RootIno, "m0"
			if merged {
				parent, base = must(a.Resolve("/d0")), "m1"
			}
			ok(t, a.Remove(parent, base, true))

			ok(t, a.Sync(ctx())) // back online: merges c's and b's roots
			ok(t, b.Refresh(ctx()))
			ok(t, b.Sync(ctx()))
			ok(t, c.Refresh(ctx()))
			ok(t, a.Close())
			ok(t, b.Close())
			ok(t, c.Close())

			k := e.device("fresh").open()
			got := strings.Join(allFiles(t, k, "/"), " ")
			if merged {
				// a had v51 in its view and deleted it.
				if strings.Contains(got, "=v51") {
					t.Errorf("v51 survives a delete by a device that had merged it: %s", got)
				}
			} else if !strings.Contains(got, "=v51") {
				t.Errorf("v51 (b's overwrite, unseen by a) is lost: %s", got)
			}
			if strings.Contains(got, "=v47") || strings.Contains(got, "=v39") {
				t.Errorf("files a removed (and no device changed) are back: %s", got)
			}
		})
	}
}

// allFiles lists every file under dir as "path=content".
func allFiles(t *testing.T, f *FS, dir string) []string {
	t.Helper()
	var out []string
	ents, err := f.ReadDir(must(f.Resolve(dir)))
	ok(t, err)
	for _, e := range ents {
		p := strings.TrimSuffix(dir, "/") + "/" + e.Name
		if e.Mode.IsDir() {
			out = append(out, allFiles(t, f, p)...)
			continue
		}
		out = append(out, p+"="+string(readFile(t, f, p)))
	}
	return out
}
