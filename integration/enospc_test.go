package integration

// T40 (docs/security-tests.md): the spool on a size-limited tmpfs (32 MiB), the store elsewhere.
// Filling it must give the writer ENOSPC (not success, not a short silent write), the daemon
// keeps running, acknowledged files stay intact, and writes work again once space is freed.

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// qaWriteFile writes data to p in 1 MiB writes, optionally fsyncs, and closes; it returns the
// first error (from open, write, fsync or close).
func qaWriteFile(p string, data []byte, fsync bool) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); off += 1 << 20 {
		end := min(off+1<<20, len(data))
		if _, err := f.Write(data[off:end]); err != nil {
			f.Close()
			return err
		}
	}
	if fsync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func qaRandom(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestENOSPC(t *testing.T) {
	qaNeedFUSE(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("T40 needs root to mount a size-limited tmpfs")
		}
		t.Skip("T40 needs root to mount a size-limited tmpfs")
	}
	dir := t.TempDir()
	spoolFS := filepath.Join(dir, "spoolfs")
	if err := os.Mkdir(spoolFS, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", spoolFS).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", spoolFS).Run() })

	v := qaNewVault(t, filepath.Join(dir, "store"))
	cache := filepath.Join(spoolFS, "cache")
	m := v.mount(filepath.Join(dir, "mnt"), cache)

	// Acknowledged files: two close-acknowledged, one fsync-acknowledged.
	acked := map[string][]byte{}
	for i, fsync := range []bool{false, false, true} {
		p := filepath.Join(m.mnt, fmt.Sprintf("acked%d.jpg", i))
		data := qaRandom(1<<20 + i*4097)
		if err := qaWriteFile(p, data, fsync); err != nil {
			t.Fatalf("writing %s before the spool is full: %v", p, err)
		}
		acked[p] = data
	}

	// Fill the spool: 64 MiB into a 32 MiB tmpfs.
	big := filepath.Join(m.mnt, "big.raw")
	start := time.Now()
	err := qaWriteFile(big, qaRandom(64<<20), false)
	if err == nil {
		t.Fatalf("64 MiB written and closed with a 32 MiB spool: want ENOSPC (df of spool:\n%s)", qaDF(spoolFS))
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the spool: got %v, want ENOSPC", err)
	}
	t.Logf("filling the spool: %v (as expected, after %v)", err, time.Since(start).Round(time.Millisecond))

	// The daemon keeps running and the mount keeps answering.
	time.Sleep(200 * time.Millisecond)
	if !m.alive() {
		t.Fatalf("daemon exited after ENOSPC; log:\n%s", m.logTail(30))
	}
	if _, err := os.ReadDir(m.mnt); err != nil {
		t.Fatalf("readdir after ENOSPC: %v", err)
	}
	for p, want := range acked {
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("acknowledged %s after ENOSPC: err=%v, equal=%v", p, err, bytes.Equal(got, want))
		}
	}

	// Free the space: remove the failed file (it may not exist), then writes must succeed
	// again (space may come back asynchronously, so retry for a while).
	if err := os.Remove(big); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removing the failed file: %v", err)
	}
	again := filepath.Join(m.mnt, "after.jpg")
	data := qaRandom(4 << 20)
	start = time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		err := qaWriteFile(again, data, false)
		if err == nil {
			t.Logf("writes work again %v after the space was freed", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes still fail 30 s after space was freed: %v (spool:\n%s)", err, qaDF(spoolFS))
		}
		time.Sleep(500 * time.Millisecond)
	}
	acked[again] = data
	// The spool keeps headroom on the cache's file system, so no group commit failed (a
	// failed one drops its batch: the removal of the failed file with it).
	if log, _ := os.ReadFile(m.log); bytes.Contains(log, []byte("committing local state failed")) {
		t.Fatalf("a group commit failed on the full cache file system; log:\n%s", m.logTail(30))
	}
	start = time.Now()
	m.sync(t)
	t.Logf("imgfs sync: %v", time.Since(start).Round(time.Millisecond))
	for p, want := range acked {
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after recovery: err=%v equal=%v", p, err, bytes.Equal(got, want))
		}
	}

	// Everything survives an unmount and a mount with an empty cache.
	start = time.Now()
	m.umount(t)
	t.Logf("imgfs umount: %v", time.Since(start).Round(time.Millisecond))
	m2 := v.mount(m.mnt, filepath.Join(dir, "cache2"))
	for p, want := range acked {
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after remount with an empty cache: err=%v equal=%v", p, err, bytes.Equal(got, want))
		}
	}
	m2.umount(t)
}

func qaDF(dir string) string {
	out, _ := exec.Command("df", "-h", dir).CombinedOutput()
	return string(out)
}

// TestSpoolLimit: `mount --spool-limit` caps the spool without a small disk (no root needed):
// a file larger than the limit fails with ENOSPC, acknowledged files stay intact, statfs
// reports the limit, writes work again once the failed file is gone, and a malformed limit
// is a usage error.
func TestSpoolLimit(t *testing.T) {
	qaNeedFUSE(t)
	dir := t.TempDir()
	v := qaNewVault(t, filepath.Join(dir, "store"))
	if out, err := v.cmd("mount", "--spool-limit", "lots", "--store", v.store, filepath.Join(dir, "mnt")).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "--spool-limit") {
		t.Fatalf("mount --spool-limit lots: %v %s", err, out)
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("mount --spool-limit lots: %v, want exit 2", err)
	}
	m := v.mount(filepath.Join(dir, "mnt"), filepath.Join(dir, "cache"), "--spool-limit", "8MiB")

	var st unix.Statfs_t
	if err := unix.Statfs(m.mnt, &st); err != nil {
		t.Fatal(err)
	}
	if total := st.Blocks * uint64(st.Bsize); total == 0 || total > 8<<20 {
		t.Errorf("statfs: %d bytes in all, want at most the 8 MiB spool limit", total)
	}
	acked := map[string][]byte{}
	first := filepath.Join(m.mnt, "first.jpg")
	acked[first] = qaRandom(3 << 20)
	if err := qaWriteFile(first, acked[first], true); err != nil {
		t.Fatalf("3 MiB under an 8 MiB spool limit: %v", err)
	}
	big := filepath.Join(m.mnt, "big.raw")
	if err := qaWriteFile(big, qaRandom(24<<20), false); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("24 MiB with an 8 MiB spool limit: got %v, want ENOSPC", err)
	}
	if err := os.Remove(big); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	again := filepath.Join(m.mnt, "again.jpg")
	acked[again] = qaRandom(4 << 20)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := qaWriteFile(again, acked[again], false)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes still fail 30 s after the failed file was removed: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	m.sync(t)
	for p, want := range acked {
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: err=%v, equal=%v", p, err, bytes.Equal(got, want))
		}
	}
	m.umount(t)
}
