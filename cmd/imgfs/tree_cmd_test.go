package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgfs/imgfs/fs/core"
)

// convertBin is the real ImageMagick (/usr/local/bin/convert may be a stand-in).
const convertBin = "/usr/bin/convert"

func needConvert(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(convertBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing (CI installs ImageMagick via scripts/setup.sh)", convertBin)
		}
		t.Skipf("%s missing: install ImageMagick", convertBin)
	}
}

func writeFile(t *testing.T, p string, b []byte, mode os.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// makeTree builds a source tree: real images made by ImageMagick, edge sizes, nested
// directories with their own modes and mtimes, a symlink and a hard link.
func makeTree(t *testing.T, src string) {
	t.Helper()
	needConvert(t)
	imgs := filepath.Join(src, "photos", "2024")
	if err := os.MkdirAll(imgs, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"-size", "640x480", "-seed", "7", "plasma:fractal", "-quality", "90", filepath.Join(imgs, "plasma.jpg")},
		{"-size", "300x200", "gradient:red-blue", filepath.Join(imgs, "gradient.png")},
		{"rose:", "-resize", "200%", filepath.Join(imgs, "rose.gif")},
		{"-size", "256x256", "-seed", "3", "plasma:", "-compress", "none", filepath.Join(imgs, "raw.tiff")},
	} {
		if out, err := exec.Command(convertBin, c...).CombinedOutput(); err != nil {
			t.Fatalf("convert %v: %v\n%s", c, err, out)
		}
	}
	base := time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)
	for i, n := range []int{0, 1, 15, 16, 17, 65535, 65536, 65537, 3<<20 + 5} {
		writeFile(t, filepath.Join(src, "sizes", fmt.Sprintf("f%07d.bin", n)), randBytes(n), 0o640, base.Add(time.Duration(i)*time.Hour))
	}
	writeFile(t, filepath.Join(src, "exec.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755, base)
	writeFile(t, filepath.Join(src, "deep", "a", "b", "c", "note.txt"), []byte("deep note"), 0o600, base)
	if err := os.Symlink("photos/2024/rose.gif", filepath.Join(src, "rose-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(imgs, "gradient.png"), filepath.Join(src, "gradient-hardlink.png")); err != nil {
		t.Fatal(err)
	}
	for i, d := range []string{"deep/a/b/c", "deep/a/b", "deep/a", "deep", "sizes", "photos/2024", "photos"} {
		p := filepath.Join(src, d)
		os.Chmod(p, []os.FileMode{0o700, 0o750, 0o755, 0o711, 0o755, 0o775, 0o755}[i])
		mt := base.Add(-time.Duration(i+1) * 24 * time.Hour)
		os.Chtimes(p, mt, mt)
	}
}

type entry struct {
	mode   os.FileMode
	mtime  int64
	size   int64
	target string
	sum    string
	ino    uint64
}

// snapshot describes a local tree: type, mode bits, mtime (ns), size, content, link target.
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		e := entry{mode: info.Mode() & (os.ModeType | os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky), mtime: info.ModTime().UnixNano()}
		e.ino = info.Sys().(*syscall.Stat_t).Ino
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			e.target, _ = os.Readlink(p)
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.size = int64(len(b))
			e.sum = fmt.Sprintf("%x", b) // exact bytes (trees are small)
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTrees(t *testing.T, want, got map[string]entry) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w, g := want[n], got[n]
		if _, ok := got[n]; !ok {
			t.Errorf("%s: missing from the export", n)
			continue
		}
		if w.mode != g.mode || w.size != g.size || w.target != g.target || w.sum != g.sum {
			t.Errorf("%s: mode %v size %d target %q -> mode %v size %d target %q (content equal: %v)", n, w.mode, w.size, w.target, g.mode, g.size, g.target, w.sum == g.sum)
		}
		if n != "." && w.mtime != g.mtime {
			t.Errorf("%s: mtime %s -> %s", n, time.Unix(0, w.mtime).UTC(), time.Unix(0, g.mtime).UTC())
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			t.Errorf("%s: in the export but not in the source", n)
		}
	}
}

func countObjects(t *testing.T, store, prefix string) int {
	t.Helper()
	n := 0
	for _, name := range listAll(t, store) {
		if strings.HasPrefix(name, prefix) {
			n++
		}
	}
	return n
}

// flipStored flips one byte in the middle of a stored object (the local store keeps
// objects as read-only files named by their store key).
func flipStored(t *testing.T, store, name string) {
	t.Helper()
	p := filepath.Join(store, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	os.Chmod(p, 0o600)
	if err := os.WriteFile(p, b, 0o400); err != nil {
		t.Fatal(err)
	}
}

func largestObject(t *testing.T, store, prefix string) string {
	t.Helper()
	best, size := "", int64(-1)
	for _, name := range listAll(t, store) {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		st, err := os.Stat(filepath.Join(store, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > size {
			best, size = name, st.Size()
		}
	}
	return best
}

func TestImportExportCheck(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	makeTree(t, src)
	e.initVault("pw")
	pw := e.withPass("pw")

	r := e.must(pw, "import", "--store", e.store, src, "/backup")
	if !strings.Contains(r.stdout, "imported 15 files") || !strings.Contains(r.stdout, "1 hard links") {
		t.Fatalf("import summary: %q", r.stdout)
	}
	contentAfterImport := countObjects(t, e.store, "c/")

	out := filepath.Join(e.dir, "out")
	e.must(pw, "export", "--store", e.store, "/backup", out)
	want, got := snapshot(t, src), snapshot(t, out)
	compareTrees(t, want, got)
	if got["gradient-hardlink.png"].ino != got["photos/2024/gradient.png"].ino {
		t.Error("hard link not preserved by export")
	}

	// ls -l style listing of a vault directory.
	r = e.must(pw, "ls", "--store", e.store, "/backup/photos/2024")
	for _, n := range []string{"plasma.jpg", "gradient.png", "rose.gif", "raw.tiff"} {
		if !strings.Contains(r.stdout, n) {
			t.Fatalf("ls misses %s: %q", n, r.stdout)
		}
	}
	if r := e.must(pw, "ls", "--store", e.store, "/backup"); !strings.Contains(r.stdout, "rose-link -> photos/2024/rose.gif") || !strings.Contains(r.stdout, "-rwxr-xr-x") {
		t.Fatalf("ls /backup: %q", r.stdout)
	}
	if r := e.run(pw, "ls", "--store", e.store, "/nope"); r.code != exitError || !strings.Contains(oneErrorLine(t, r), "no such file") {
		t.Fatalf("ls of a missing path: %+v", r)
	}

	// T36: the same image under 100 names adds no content object; one changed byte adds one.
	dups := filepath.Join(e.dir, "dups")
	img, err := os.ReadFile(filepath.Join(src, "photos", "2024", "plasma.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		writeFile(t, filepath.Join(dups, fmt.Sprintf("copy%03d.jpg", i)), img, 0o644, time.Now())
	}
	e.must(pw, "import", "--store", e.store, dups, "/dups")
	if n := countObjects(t, e.store, "c/"); n != contentAfterImport {
		t.Fatalf("100 copies of an imported image: %d content objects, want %d", n, contentAfterImport)
	}
	changed := bytes.Clone(img)
	changed[len(changed)/2] ^= 1
	writeFile(t, filepath.Join(dups, "copy042.jpg"), changed, 0o644, time.Now())
	e.must(pw, "import", "--store", e.store, filepath.Join(dups, "copy042.jpg"), "/dups")
	if n := countObjects(t, e.store, "c/"); n != contentAfterImport+1 {
		t.Fatalf("one changed byte: %d content objects, want %d", n, contentAfterImport+1)
	}
	// The replaced file's old content is still referenced by the other 99 copies.

	// A clean vault checks clean, data included.
	r = e.must(pw, "check", "--store", e.store, "--read-data")
	if !strings.Contains(r.stdout, "no problems found") {
		t.Fatalf("check: %q", r.stdout)
	}

	// Flip one byte of the largest content object (the 3 MiB file): check reports it.
	victim := largestObject(t, e.store, "c/")
	flipStored(t, e.store, victim)
	r = e.run(pw, "check", "--store", e.store)
	if r.code != exitIntegrity || !strings.Contains(r.stdout, "corrupt "+victim) {
		t.Fatalf("check after a flipped byte: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	oneErrorLine(t, r)
	// A fresh cache reads from the store: the data pass names the file, export refuses it.
	fresh := []string{"--cache", filepath.Join(e.dir, "fresh-cache")}
	r = e.run(pw, append([]string{"check", "--store", e.store, "--read-data"}, fresh...)...)
	if r.code != exitIntegrity || !strings.Contains(r.stdout, "sizes/f3145733.bin") {
		t.Fatalf("check --read-data after a flipped byte: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out2 := filepath.Join(e.dir, "out2")
	r = e.run(pw, append([]string{"export", "--store", e.store, "/backup/sizes", out2}, fresh...)...)
	if r.code == 0 {
		t.Fatal("export of a corrupted file succeeded")
	}
	oneErrorLine(t, r)
	if _, err := os.Stat(filepath.Join(out2, "f3145733.bin")); err == nil {
		t.Fatal("export left the corrupted file under its real name")
	}
}

func TestGCGraceAndLive(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	keep, old, newer := randBytes(70_000), randBytes(5000), randBytes(6000)
	writeFile(t, filepath.Join(src, "keep.bin"), keep, 0o644, time.Now())
	writeFile(t, filepath.Join(src, "b.bin"), old, 0o644, time.Now())
	e.initVault("pw")
	pw := e.withPass("pw")
	e.must(pw, "import", "--store", e.store, src, "/")
	before := map[string]bool{}
	for _, n := range listAll(t, e.store) {
		before[n] = true
	}
	// Replace b.bin: its old content object becomes unreferenced.
	writeFile(t, filepath.Join(src, "b.bin"), newer, 0o644, time.Now())
	e.must(pw, "import", "--store", e.store, filepath.Join(src, "b.bin"), "/")
	var added []string
	for _, n := range listAll(t, e.store) {
		if !before[n] && strings.HasPrefix(n, "c/") {
			added = append(added, n)
		}
	}
	if len(added) != 1 {
		t.Fatalf("new content objects %v, want 1", added)
	}
	contentBefore := countObjects(t, e.store, "c/")

	// First run: the old object is only marked (first seen unreferenced now).
	r := e.must(pw, "gc", "--store", e.store, "--grace", "1h")
	if !strings.Contains(r.stdout, "deleted: 0") || !strings.Contains(r.stdout, "next run deletes more after") {
		t.Fatalf("first gc: %q", r.stdout)
	}
	if n := countObjects(t, e.store, "c/"); n != contentBefore {
		t.Fatalf("first gc deleted content inside the grace period: %d -> %d", contentBefore, n)
	}
	// Inside the grace period a second run deletes nothing either.
	e.must(pw, "gc", "--store", e.store, "--grace", "1h")
	if n := countObjects(t, e.store, "c/"); n != contentBefore {
		t.Fatalf("gc deleted inside the grace period: %d -> %d", contentBefore, n)
	}
	// Once the object has been unreferenced longer than the grace period, it goes.
	time.Sleep(1100 * time.Millisecond)
	r = e.must(pw, "gc", "--store", e.store, "--grace", "1s")
	if n := countObjects(t, e.store, "c/"); n != contentBefore-1 {
		t.Fatalf("gc after the grace period: %d content objects, want %d (%s)", n, contentBefore-1, r.stdout)
	}
	for _, n := range added {
		if !contains(listAll(t, e.store), n) {
			t.Fatalf("gc deleted the new, referenced content %s", n)
		}
	}
	// Nothing referenced was deleted: check is clean and the files read back.
	if r := e.must(pw, "check", "--store", e.store, "--read-data"); !strings.Contains(r.stdout, "no problems found") {
		t.Fatalf("check after gc: %q", r.stdout)
	}
	// Export with a fresh cache: the namespace is rebuilt from the store's remaining
	// metadata objects, so gc kept every object the root needs.
	out := filepath.Join(e.dir, "out")
	e.must(pw, "export", "--store", e.store, "--cache", filepath.Join(e.dir, "fresh-cache"), "/", out)
	for name, want := range map[string][]byte{"keep.bin": keep, "b.bin": newer} {
		if got, err := os.ReadFile(filepath.Join(out, name)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after gc: %v", name, err)
		}
	}
	// A referenced object deleted behind imgfs's back is reported as missing.
	victim := largestObject(t, e.store, "c/")
	if err := os.Remove(filepath.Join(e.store, filepath.FromSlash(victim))); err != nil {
		t.Fatal(err)
	}
	if r := e.run(pw, "check", "--store", e.store); r.code != exitIntegrity || !strings.Contains(r.stdout, "missing "+victim) {
		t.Fatalf("check with a missing object: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := e.run(pw, "gc", "--store", e.store, "--grace", "soon"); r.code != exitUsage {
		t.Fatalf("bad --grace: %+v", r)
	}
}

// T37 at the CLI: while another device may hold unsynced work (a writer is open), gc refuses
// (exit 7) and deletes nothing; import runs beside the writer (several writers merge).
func TestGCRefusesBesideWriter(t *testing.T) {
	e := newEnv(t)
	// A writer in this process: core opened read-write on the same store, its own cache.
	pw, store, keys := e.importedVault()
	src := filepath.Join(e.dir, "src") // importedVault's source tree
	w, err := core.Open(context.Background(), store, keys, core.Options{CacheDir: filepath.Join(e.dir, "writer-cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	// The writer stores a new file: its content is not referenced by a committed root yet.
	_, h, err := w.Create(core.RootIno, "new.bin", 0o644, true)
	if err != nil {
		t.Fatal(err)
	}
	h.WriteAt(randBytes(3000), 0)
	h.Flush()
	h.Release()

	before := listAll(t, e.store)
	r := e.run(pw, "gc", "--store", e.store, "--grace", "0")
	if r.code != exitBusy || !strings.Contains(r.stderr, "other devices may hold work") {
		t.Fatalf("gc beside a writer: exit %d, want %d (%s)", r.code, exitBusy, r.stderr)
	}
	oneErrorLine(t, r)
	after := listAll(t, e.store)
	for _, n := range before {
		if !contains(after, n) {
			t.Fatalf("%s deleted while a writer was open", n)
		}
	}
	e.must(pw, "import", "--store", e.store, src, "/x")
	// Read-only commands still work beside the writer.
	e.must(pw, "ls", "--store", e.store)

	// Once the writer has closed (its file committed), gc --grace 0 keeps that file's
	// content: what a writer uploaded and committed is never collected.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	e.must(pw, "gc", "--store", e.store, "--grace", "0")
	if r := e.must(pw, "check", "--store", e.store, "--read-data"); !strings.Contains(r.stdout, "no problems found") || !strings.Contains(r.stdout, "data: 3 files") {
		t.Fatalf("check after gc: %q", r.stdout)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// An interrupted import (SIGINT) exits 130 and leaves no partial file under a real name:
// every file in the vault is complete and the next import runs.
func TestImportInterrupted(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	sizes := map[string]int{}
	for i := 0; i < 4; i++ {
		n := 12<<20 + i
		name := fmt.Sprintf("big%d.bin", i)
		sizes[name] = n
		writeFile(t, filepath.Join(src, name), randBytes(n), 0o644, time.Now())
	}
	e.initVault("pw")
	pw := e.withPass("pw")
	cmd := exec.Command(imgfsBin, "import", "--store", e.store, src, "/in")
	cmd.Env = append(append([]string{}, e.vars...), pw...)
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once the import has opened the vault (its presence record exists; it is
	// copying files then).
	presence := filepath.Join(e.store, "p")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ents, _ := os.ReadDir(presence); len(ents) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("import never opened the vault")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var ee *exec.ExitError
	if err == nil {
		t.Log("import finished before the interrupt arrived")
	} else if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("interrupted import: %v (%s)", err, se.String())
	}
	r := e.must(pw, "ls", "--store", e.store, "-R")
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, "imgfs-import") {
			t.Fatalf("temporary file left in the vault: %q", line)
		}
		f := strings.Fields(line)
		if len(f) >= 7 && strings.HasPrefix(f[len(f)-1], "big") {
			if want := sizes[f[len(f)-1]]; f[2] != fmt.Sprint(want) {
				t.Fatalf("partial file in the vault: %q (want %d bytes)", line, want)
			}
		}
	}
	e.must(pw, "import", "--store", e.store, src, "/in")
}
