package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend/s3/s3test"
)

// TestCheckRepair is T18's repair half (docs/security-tests.md) on the local store: a content
// object overwritten with other bytes and one deleted are reported lost while no good copy is
// known (nothing is changed), and restored from the original files with --from; the vault then
// checks clean and exports byte-exact.
func TestCheckRepair(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	makeTree(t, src)
	e.initVault("pw")
	pw := e.withPass("pw")
	e.must(pw, "import", "--store", e.store, src, "/backup")

	victim := largestObject(t, e.store, "c/") // sizes/f3145733.bin
	gone := ""
	for _, n := range listAll(t, e.store) {
		if strings.HasPrefix(n, "c/") && n != victim {
			gone = n
			break
		}
	}
	flipStored(t, e.store, victim)
	if err := os.Remove(filepath.Join(e.store, filepath.FromSlash(gone))); err != nil {
		t.Fatal(err)
	}

	if r := e.run(pw, "check", "--store", e.store, "--from", src); r.code != exitUsage {
		t.Fatalf("--from without --repair: exit %d, want %d", r.code, exitUsage)
	}
	r := e.run(pw, "check", "--store", e.store, "--repair")
	if r.code != exitIntegrity {
		t.Fatalf("repair with no good copy: exit %d, want %d\n%s%s", r.code, exitIntegrity, r.stdout, r.stderr)
	}
	for _, want := range []string{"lost " + victim + ": no good copy of /backup/sizes/f3145733.bin", "lost " + gone + ":",
		"after repair: 2 problem(s), 2 content object(s) lost", "corrupt " + victim, "missing " + gone} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("repair with no good copy: stdout lacks %q:\n%s", want, r.stdout)
		}
	}

	r = e.must(pw, "check", "--store", e.store, "--repair", "--from", src)
	for _, want := range []string{"repaired " + victim + " from " + filepath.Join(src, "sizes", "f3145733.bin"),
		"repaired " + gone + " from " + src, "after repair: 0 problem(s), 0 content object(s) lost"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("repair --from: stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	fresh := filepath.Join(e.dir, "fresh-cache")
	if r := e.must(pw, "check", "--store", e.store, "--read-data", "--cache", fresh); !strings.Contains(r.stdout, "no problems found") {
		t.Fatalf("check after repair: %s", r.stdout)
	}
	out := filepath.Join(e.dir, "out")
	e.must(pw, "export", "--store", e.store, "--cache", fresh, "/backup", out)
	compareTrees(t, snapshot(t, src), snapshot(t, out))
}

// TestCheckRepairFromCache: on S3 (versitygw) the read cache keeps the objects this
// machine stored, so an object overwritten in the bucket is restored from the cache.
func TestCheckRepairFromCache(t *testing.T) {
	url, s3env, dataDir := s3test.Start(t)
	e := newEnv(t)
	vars := append(e.withPass("pw"), s3env...)
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, "a.jpg"), randBytes(300_000), 0o644, time.Now())
	writeFile(t, filepath.Join(src, "b.jpg"), randBytes(2_000_000), 0o644, time.Now())
	e.must(vars, "init", "--store", url)
	e.must(vars, "import", "--store", url, src, "/x")

	// The largest content object in the bucket's directory gets one byte flipped.
	victim, size := "", int64(0)
	filepath.WalkDir(filepath.Join(dataDir, "c"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if st, err := d.Info(); err == nil && st.Size() > size {
				rel, _ := filepath.Rel(dataDir, p)
				victim, size = filepath.ToSlash(rel), st.Size()
			}
		}
		return nil
	})
	if victim == "" {
		t.Fatalf("no content object under %s", dataDir)
	}
	flipStored(t, dataDir, victim)
	if r := e.run(vars, "check", "--store", url); r.code != exitIntegrity || !strings.Contains(r.stdout, "corrupt "+victim) {
		t.Fatalf("check after a flipped byte: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := e.must(vars, "check", "--store", url, "--repair")
	if !strings.Contains(r.stdout, "repaired "+victim+" from the cache") || !strings.Contains(r.stdout, "after repair: 0 problem(s)") {
		t.Fatalf("repair from the cache:\n%s", r.stdout)
	}
	fresh := filepath.Join(e.dir, "fresh-cache")
	if r := e.must(vars, "check", "--store", url, "--read-data", "--cache", fresh); !strings.Contains(r.stdout, "no problems found") {
		t.Fatalf("check after repair: %s", r.stdout)
	}
}

// TestCheckRepairChunk: a file of several chunks (format v2) loses every chunk object; check
// names each missing chunk, and --repair --from chunks the original again and restores all.
func TestCheckRepairChunk(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	data := randBytes(12 << 20) // at least two chunks (a chunk is at most 8 MiB)
	writeFile(t, filepath.Join(src, "big.tif"), data, 0o644, time.Now())
	e.initVault("pw")
	pw := e.withPass("pw")
	e.must(pw, "import", "--store", e.store, src, "/x")
	var chunks []string
	for _, n := range listAll(t, e.store) {
		if strings.HasPrefix(n, "c/") {
			chunks = append(chunks, n)
		}
	}
	if len(chunks) < 2 {
		t.Fatalf("a 12 MiB file is %d content objects", len(chunks))
	}
	for _, n := range chunks {
		if err := os.Remove(filepath.Join(e.store, filepath.FromSlash(n))); err != nil {
			t.Fatal(err)
		}
	}
	r := e.must(pw, "check", "--store", e.store, "--repair", "--from", src)
	for _, n := range chunks {
		if !strings.Contains(r.stdout, "missing "+n) || !strings.Contains(r.stdout, "repaired "+n+" from "+filepath.Join(src, "big.tif")) {
			t.Fatalf("chunk %s not reported and repaired:\n%s", n, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "after repair: 0 problem(s), 0 content object(s) lost") {
		t.Fatalf("repair:\n%s", r.stdout)
	}
	out := filepath.Join(e.dir, "out")
	e.must(pw, "export", "--store", e.store, "--cache", filepath.Join(e.dir, "fresh"), "/x", out)
	compareTrees(t, snapshot(t, src), snapshot(t, out))
}
