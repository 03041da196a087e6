package integration

// T39 (docs/security-tests.md): kill -9 of the daemon while real writers run, then remount and
// check against the writers' own fsynced journal. The loop itself lives in
// integration/crashdriver (also run by bench/crash.sh for 200 iterations); this test runs 20
// iterations in CI.
//
// This file also holds the qa* helpers that the crash, ENOSPC, posixtest, S3 and fault tests
// share: building the binaries, starting `imgfs mount -f` as a subprocess, killing it, and
// unmounting (also on failure, in t.Cleanup).

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	qaBuildOnce sync.Once
	qaBinDir    string
	qaBuildErr  error
)

// qaRepoRoot is the module root (the test runs in integration/).
func qaRepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Dir(filepath.Dir(file))
}

// qaBinaries builds imgfs and crashdriver once per test binary.
func qaBinaries(t testing.TB) (imgfs, crashdriver string) {
	t.Helper()
	qaBuildOnce.Do(func() {
		qaBinDir, qaBuildErr = os.MkdirTemp("", "imgfs-qa-bin-")
		if qaBuildErr != nil {
			return
		}
		root := qaRepoRoot(t)
		for _, b := range [][2]string{{"imgfs", "./cmd/imgfs"}, {"crashdriver", "./integration/crashdriver"}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(qaBinDir, b[0]), b[1])
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				qaBuildErr = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
	})
	if qaBuildErr != nil {
		t.Fatal(qaBuildErr)
	}
	return filepath.Join(qaBinDir, "imgfs"), filepath.Join(qaBinDir, "crashdriver")
}

// qaNeed skips the test when a tool is missing, except under CI=true where it fails.
func qaNeed(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if strings.HasPrefix(tool, "/") {
			if _, err := os.Stat(tool); err != nil {
				missing = append(missing, tool)
			}
			continue
		}
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("missing %v (make setup installs it)", missing)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// qaNeedFUSE checks for /dev/fuse and fusermount3.
func qaNeedFUSE(t testing.TB) {
	t.Helper()
	qaNeed(t, "/dev/fuse", "fusermount3")
}

// qaVault is a vault in a store plus a passphrase file.
type qaVault struct {
	t     testing.TB
	imgfs string
	store string
	pass  string
	env   []string // extra environment (S3 credentials)
}

// qaNewVault runs `imgfs init` on store (a directory path or an s3: URL).
func qaNewVault(t testing.TB, store string, env ...string) *qaVault {
	t.Helper()
	imgfs, _ := qaBinaries(t)
	pass := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(pass, []byte("integration passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := &qaVault{t: t, imgfs: imgfs, store: store, pass: pass, env: env}
	// The Argon2id floor (64 MiB) keeps each mount's unlock short; the KDF is not under test.
	initCmd := v.cmd("init", "--store", store)
	initCmd.Env = append(initCmd.Env, "IMGFS_KDF_MEMORY_KIB=65536")
	if out, err := initCmd.CombinedOutput(); err != nil {
		t.Fatalf("imgfs init: %v\n%s", err, out)
	}
	return v
}

func (v *qaVault) cmd(args ...string) *exec.Cmd {
	return v.cmdCtx(context.Background(), args...)
}

func (v *qaVault) cmdCtx(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, v.imgfs, args...)
	cmd.Env = append(append(os.Environ(), "IMGFS_PASSPHRASE_FILE="+v.pass), v.env...)
	return cmd
}

// qaMount is one `imgfs mount -f` subprocess.
type qaMount struct {
	v     *qaVault
	mnt   string
	cache string
	cmd   *exec.Cmd
	done  chan error
	log   string
}

// qaIsMounted reports whether mnt is a mount point and its fs type (the last, visible mount
// when several are stacked).
func qaIsMounted(mnt string) (bool, string) {
	fstype, ok := mountedFSType(mnt)
	return ok, fstype
}

func qaLazyUnmount(mnt string) {
	for i := 0; i < 50; i++ {
		if ok, _ := qaIsMounted(mnt); !ok {
			return
		}
		_ = exec.Command("fusermount3", "-u", "-z", mnt).Run()
		time.Sleep(20 * time.Millisecond)
	}
}

// mount starts `imgfs mount -f` on mnt with the given cache dir and waits until it serves.
// t.Cleanup kills the daemon and unmounts lazily if the test did not unmount.
func (v *qaVault) mount(mnt, cache string, extra ...string) *qaMount {
	v.t.Helper()
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		v.t.Fatal(err)
	}
	if err := os.MkdirAll(cache, 0o700); err != nil {
		v.t.Fatal(err)
	}
	logf, err := os.CreateTemp(filepath.Dir(cache), "mount-*.log")
	if err != nil {
		v.t.Fatal(err)
	}
	args := append([]string{"mount", "-f", "--store", v.store, "--cache", cache}, extra...)
	cmd := v.cmd(append(args, mnt)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	m := &qaMount{v: v, mnt: mnt, cache: cache, cmd: cmd, done: make(chan error, 1), log: logf.Name()}
	go func() { m.done <- cmd.Wait(); logf.Close() }()
	v.t.Cleanup(func() {
		if v.t.Failed() {
			v.t.Logf("daemon log %s (last 40 lines):\n%s", mnt, m.logTail(40))
		}
		if m.alive() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			m.wait(10 * time.Second)
		}
		qaLazyUnmount(mnt)
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ok, typ := qaIsMounted(mnt); ok && strings.HasPrefix(typ, "fuse") {
			if _, err := os.Stat(mnt); err == nil {
				return m
			}
		}
		if !m.alive() {
			v.t.Fatalf("imgfs mount exited before the mount was ready; log:\n%s", m.logTail(30))
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("mount not ready after 60 s; log:\n%s", m.logTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *qaMount) alive() bool {
	select {
	case err := <-m.done:
		m.done <- err
		return false
	default:
		return true
	}
}

func (m *qaMount) wait(d time.Duration) bool {
	select {
	case err := <-m.done:
		m.done <- err
		return true
	case <-time.After(d):
		return false
	}
}

func (m *qaMount) logTail(n int) string {
	data, _ := os.ReadFile(m.log)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// umount runs `imgfs umount` and waits for the daemon to exit.
func (m *qaMount) umount(t testing.TB) {
	t.Helper()
	if out, err := m.v.cmd("umount", m.mnt).CombinedOutput(); err != nil {
		t.Fatalf("imgfs umount: %v\n%s\nlog:\n%s", err, out, m.logTail(20))
	}
	if !m.wait(60 * time.Second) {
		t.Fatalf("daemon still running 60 s after imgfs umount")
	}
	if ok, _ := qaIsMounted(m.mnt); ok {
		t.Fatalf("%s still mounted after imgfs umount", m.mnt)
	}
}

// sync runs `imgfs sync` (everything sealed, stored, root written).
func (m *qaMount) sync(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := m.v.cmdCtx(ctx, "sync", m.mnt).CombinedOutput(); err != nil {
		t.Fatalf("imgfs sync: %v\n%s", err, out)
	}
}

// qaSHA256File hashes a file.
func qaSHA256File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// qaTreeSums hashes every regular file under root (relative path -> sha256); symlinks map
// to "-> target".
func qaTreeSums(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "-> " + target
		case d.Type().IsRegular():
			s, err := qaSHA256File(p)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			out[rel] = s
		}
		return nil
	})
	if err != nil {
		t.Fatalf("hashing %s: %v", root, err)
	}
	return out
}

// qaSameSums compares two tree hashes and reports every difference.
func qaSameSums(t testing.TB, what string, want, got map[string]string) {
	t.Helper()
	bad := 0
	for p, w := range want {
		if g, ok := got[p]; !ok {
			t.Errorf("%s: %s missing", what, p)
			bad++
		} else if g != w {
			t.Errorf("%s: %s differs", what, p)
			bad++
		}
		if bad > 20 {
			t.Fatalf("%s: too many differences", what)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected %s", what, p)
		}
	}
}

// qaRunCrashLoop runs `crashdriver loop` with the given extra flags and streams its output.
func qaRunCrashLoop(t *testing.T, timeout time.Duration, env []string, args ...string) {
	t.Helper()
	imgfs, driver := qaBinaries(t)
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, driver, append([]string{"loop", "-imgfs", imgfs, "-work", work}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qaLazyUnmount(filepath.Join(work, "mnt")) })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("crash loop did not finish within %v", timeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("crash loop failed (exit %d); daemon logs are in the log lines above", ee.ExitCode())
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestCrashKill9 is T39 with 20 iterations on the local store: every second iteration wipes
// the cache dir (machine loss: only fsync-acknowledged files must survive), 15 % kill the
// remounted daemon again during replay, and a final mount with an empty cache re-checks all.
func TestCrashKill9(t *testing.T) {
	qaNeedFUSE(t)
	qaNeed(t, "cp", "dd", "sync")
	qaRunCrashLoop(t, 5*time.Minute, nil, "-n", "20", "-max-run", "2s")
}
