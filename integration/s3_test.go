package integration

// The file-system workloads with the vault on a real S3 server (versitygw on 127.0.0.1,
// started by backend/s3/s3test): cp -r, rsync -a, tar x and c, sha256 of everything read back,
// again from an empty cache (every byte from S3); then the leak scans (dedup/leakscan,
// T1/T2/T3/T10 in docs/security-tests.md) over versitygw's data directory (every object is a
// plain file), the request lines and headers a recording proxy saw, the cache directories and
// the daemons' logs. Also the crash loop and posixtest on S3.

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend/faulty"
	"github.com/imgfs/imgfs/backend/s3/s3test"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/dedup/leakscan"
)

// qaMakeTree writes a tree of distinctive names and contents: random "photos" of 0.1-3 MB,
// edge sizes, text with a recognisable sentence, a duplicate, an empty file, a symlink and
// nested directories. It returns the number of regular files.
func qaMakeTree(t testing.TB, dir string, seed uint64) int {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 99))
	files := 0
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files++
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	for i := 0; i < 8; i++ {
		write(fmt.Sprintf("Holidays-Lofoten-2026/IMG_Svolvaer_%04d.jpg", i), random(100_000+r.IntN(3_000_000)))
	}
	for _, n := range []int{1, 15, 16, 17, 65535, 65536, 65537, 131073} {
		write(fmt.Sprintf("edge-sizes/size-%07d.bin", n), random(n))
	}
	text := strings.Repeat("The quick brown imgfs fox jumps over the lazy plaintext scanner. ", 400)
	write("Documents/Steuererklaerung-vertraulich.txt", []byte(text))
	dup := random(700_000)
	write("Duplicates/original-sunrise.jpg", dup)
	write("Duplicates/copy-of-sunrise.jpg", dup)
	write("Empty/nothing-here.txt", nil)
	write("deep/level-one/level-two/level-three/leaf-document.txt", []byte("leaf content that is long enough to be scanned for leaks\n"))
	if err := os.Symlink("../Documents/Steuererklaerung-vertraulich.txt", filepath.Join(dir, "deep/shortcut-to-taxes")); err != nil {
		t.Fatal(err)
	}
	return files
}

func qaSh(t testing.TB, script string) {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

func TestS3Workloads(t *testing.T) {
	qaNeedFUSE(t)
	qaNeed(t, "rsync", "tar", "cp")
	// The vault's store is versitygw behind a proxy that records request lines and headers.
	srv := s3test.StartServer(t)
	proxy, url := qaProxy(t, srv, faulty.ProxyConfig{RecordHeads: true})
	env, dataDir := srv.Env(), filepath.Join(srv.DataDir, s3test.Bucket)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	nfiles := qaMakeTree(t, src, 1)
	want := qaTreeSums(t, src)

	v := qaNewVault(t, url, env...)
	m := v.mount(filepath.Join(dir, "mnt"), filepath.Join(dir, "cache1"))
	start := time.Now()
	qaSh(t, fmt.Sprintf("cp -r %s %s/cp", src, m.mnt))
	qaSh(t, fmt.Sprintf("rsync -a %s/ %s/rsync/", src, m.mnt))
	qaSh(t, fmt.Sprintf("mkdir %s/tar && tar -C %s -cf - . | tar -C %s/tar -xf -", m.mnt, src, m.mnt))
	// tar c reading from the mount, extracted outside it.
	qaSh(t, fmt.Sprintf("mkdir %s/untar && tar -C %s/rsync -cf - . | tar -C %s/untar -xf -", dir, m.mnt, dir))
	t.Logf("cp -r, rsync -a, tar x, tar c of %d files: %v", nfiles, time.Since(start).Round(time.Millisecond))
	for _, sub := range []string{"cp", "rsync", "tar"} {
		qaSameSums(t, "mounted "+sub, want, qaTreeSums(t, filepath.Join(m.mnt, sub)))
	}
	qaSameSums(t, "tar c from the mount", want, qaTreeSums(t, filepath.Join(dir, "untar")))
	m.sync(t)
	m.umount(t)

	// A second machine: same store and passphrase, empty cache.
	m2 := v.mount(m.mnt, filepath.Join(dir, "cache2"))
	for _, sub := range []string{"cp", "rsync", "tar"} {
		qaSameSums(t, "fresh cache "+sub, want, qaTreeSums(t, filepath.Join(m2.mnt, sub)))
	}
	// rsync -a kept modes and mtimes.
	fi1, err1 := os.Stat(filepath.Join(src, "Documents/Steuererklaerung-vertraulich.txt"))
	fi2, err2 := os.Stat(filepath.Join(m2.mnt, "rsync/Documents/Steuererklaerung-vertraulich.txt"))
	if err1 != nil || err2 != nil || !fi1.ModTime().Equal(fi2.ModTime()) || fi1.Mode() != fi2.Mode() {
		t.Errorf("rsync -a metadata after remount: %v %v / %v %v", fi1, err1, fi2, err2)
	}
	m2.umount(t)

	// T1/T2 over every object versitygw stored (bodies and keys).
	s := leakscan.New()
	if err := s.AddTree(src); err != nil {
		t.Fatal(err)
	}
	hits, err := s.ScanDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) > 0 {
		t.Fatalf("plaintext in the S3 store:\n%s", leakscan.Format(hits))
	}
	objects := 0
	filepath.WalkDir(dataDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			objects++
		}
		return nil
	})
	if objects == 0 {
		t.Fatalf("no objects under %s: the scan saw nothing", dataDir)
	}
	// Positive control: the same scanner finds a plaintext file copied into a scanned dir.
	ctl := filepath.Join(dir, "control")
	qaSh(t, fmt.Sprintf("mkdir %s && cp %s/Documents/Steuererklaerung-vertraulich.txt %s/x", ctl, src, ctl))
	if hits, _ := s.ScanDir(ctl); len(hits) == 0 {
		t.Fatal("positive control: leak scanner missed a plaintext copy")
	}
	t.Logf("leak scan: %d objects in versitygw's data dir, no plaintext window or name", objects)

	// T1/T2 on the wire: no plaintext window or name in any request line or header.
	heads := proxy.Heads()
	if !bytes.Contains(heads, []byte("PUT /"+s3test.Bucket+"/c/")) {
		t.Fatal("positive control: the proxy recorded no content PUT")
	}
	if hits := s.ScanBytes("request lines and headers", heads); len(hits) > 0 {
		t.Fatalf("plaintext in request lines or headers:\n%s", leakscan.Format(hits))
	}
	// T3: no header value is the exact size of a file (sizes below 4 KiB are too common
	// a number to mean anything).
	sizes := map[int64]string{}
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if info, ierr := d.Info(); err == nil && ierr == nil && d.Type().IsRegular() && info.Size() >= 4096 {
			sizes[info.Size()] = p
		}
		return nil
	})
	for _, line := range strings.Split(string(heads), "\r\n") {
		if _, v, ok := strings.Cut(line, ": "); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && sizes[n] != "" {
				t.Errorf("header %q carries the exact size of %s", line, sizes[n])
			}
		}
	}
	// T1: the spool and cache directories after unmount.
	for _, c := range []string{m.cache, m2.cache} {
		hits, err := s.ScanDir(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) > 0 {
			t.Fatalf("plaintext in the cache directory %s:\n%s", c, leakscan.Format(hits))
		}
	}
	t.Logf("request heads: %d bytes, no plaintext window, name or exact size; cache dirs clean", len(heads))

	// T10 (for this workload): no key and not the passphrase, in any form, in the daemons'
	// logs, the cache directories, the request heads or the store.
	keys, err := keyring.Unlock(context.Background(), srv.Open(t, s3test.Bucket), []byte("integration passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	sec := leakscan.New()
	for label, k := range map[string][]byte{"MK": keys.MasterKey, "CS": keys.ConvergenceSecret, "K_meta": keys.MetaKey,
		"K_hdr": keys.HeaderKey, "K_local": keys.LocalKey, "passphrase": []byte("integration passphrase")} {
		sec.AddSecret(label, k)
	}
	if len(sec.ScanBytes("control", []byte("key "+hex.EncodeToString(keys.MasterKey)))) == 0 {
		t.Fatal("positive control: the secret scan misses a hex key")
	}
	var found []leakscan.Hit
	found = append(found, sec.ScanBytes("request heads", heads)...)
	for _, p := range []string{m.log, m2.log, m.cache, m2.cache, dataDir} {
		scan := sec.ScanDir
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			scan = sec.ScanFile
		}
		hits, err := scan(p)
		if err != nil {
			t.Fatal(err)
		}
		found = append(found, hits...)
	}
	if len(found) > 0 {
		t.Fatalf("key material in logs, cache, requests or store:\n%s", leakscan.Format(found))
	}
}

// TestS3Crash runs the T39 loop (fewer iterations than on the local store) against versitygw.
func TestS3Crash(t *testing.T) {
	qaNeedFUSE(t)
	qaNeed(t, "cp", "dd", "sync")
	url, env, _ := s3test.Start(t)
	qaRunCrashLoop(t, 4*time.Minute, env, "-n", "6", "-max-run", "2s", "-store", url)
}

// TestS3Posix runs go-fuse's posixtest with the vault on versitygw (same skips as TestPosix).
func TestS3Posix(t *testing.T) {
	qaNeedFUSE(t)
	url, env, _ := s3test.Start(t)
	dir := t.TempDir()
	v := qaNewVault(t, url, env...)
	m := v.mount(filepath.Join(dir, "mnt"), filepath.Join(dir, "cache"))
	qaRunPosix(t, m)
	m.sync(t)
	m.umount(t)
}
