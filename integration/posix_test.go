package integration

// go-fuse's posixtest suite (github.com/hanwen/go-fuse/v2/posixtest v2.12.1, a test-only
// dependency) run against a real `imgfs mount` subprocess (the serving process must not call
// into its own mount). Every test runs in its own subdirectory, since the tests use fixed
// names such as "file" and "link".

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkips lists the posixtest tests that imgfs does not pass, each with the reason.
var posixSkips = map[string]string{
	// The test takes a POSIX write lock on one fd and expects F_SETLK of a read lock on a
	// second fd of the same process to fail with EAGAIN. POSIX record locks belong to the
	// process, so the second lock succeeds on Linux: the test fails on plain ext4 and on
	// gocryptfs as well, and JuiceFS drops it from its run.
	"FcntlFlockLocksFile": "expects a same-process POSIX lock conflict that Linux never reports (fails on ext4 and gocryptfs too)",
}

// posixSkipIfNoFallocate skips the fallocate tests when the mount answers fallocate(2) with
// EOPNOTSUPP (posixtest treats EOPNOTSUPP as a failure, not a skip). imgfs implements modes
// 0 and KEEP_SIZE (core.Handle.Allocate), so the tests run; the probe stays for mounts
// of other file systems under the same harness.
func posixSkipIfNoFallocate(t *testing.T, dir string) {
	f, err := os.Create(filepath.Join(dir, ".fallocate-probe"))
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, 4096); errors.Is(err, syscall.EOPNOTSUPP) {
		t.Skip("fallocate(2) answers EOPNOTSUPP: imgfs does not preallocate (see posixSkipIfNoFallocate)")
	}
}

func TestPosix(t *testing.T) {
	qaNeedFUSE(t)
	dir := t.TempDir()
	v := qaNewVault(t, filepath.Join(dir, "store"))
	m := v.mount(filepath.Join(dir, "mnt"), filepath.Join(dir, "cache"))
	qaRunPosix(t, m)
	m.umount(t)
}

// qaRunPosix runs every posixtest test in its own subdirectory of the mount.
func qaRunPosix(t *testing.T, m *qaMount) {
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := posixSkips[name]; ok {
				t.Skip(why)
			}
			sub := filepath.Join(m.mnt, name)
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(name, "Fallocate") {
				posixSkipIfNoFallocate(t, sub)
			}
			posixtest.All[name](t, sub)
		})
		if !m.alive() {
			t.Fatalf("daemon died during %s; log:\n%s", name, m.logTail(30))
		}
	}
}
