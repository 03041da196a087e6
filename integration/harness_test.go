package integration

// The harness: build the real imgfs binary once, create a vault in a temporary store, mount
// it for real in a temporary directory (a daemon process: the test process only ever
// accesses the mount from outside: a process that serves a FUSE mount and also calls into it
// can deadlock), and always unmount in t.Cleanup.
//
//	m := startVault(t, vaultOptions{})      // init + mount
//	os.WriteFile(filepath.Join(m.Dir, "x"), data, 0o644)
//	m.Sync()                                 // imgfs sync
//	m.Remount()                              // imgfs umount + imgfs mount, same cache
//	m.RemountFresh()                         // ... with an empty cache dir (a second machine)
//	m.Kill9()                                // kill -9 the daemon, clear the dead mount
//	m.Mount()                                // mount again after Kill9/Umount
//	out := m.Imgfs(t, "status", m.Dir)       // any imgfs command with the vault's environment
//
// Environment knobs:
//
//	IMGFS_BIN=path          use this binary instead of building ./cmd/imgfs
//	IMGFS_TEST_STORE=s3     run every vault on a real S3 server (versitygw via
//	                        backend/s3/s3test; skipped when missing, fails under CI=true)
//	CI=true                 a missing tool (fusermount3, /dev/fuse, convert, rsync) fails
//	                        the test instead of skipping it
//
// Every vault gets its own HOME, XDG_* directories and control-socket directory, so tests
// run in parallel without seeing each other's mounts or caches.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/backend/s3/s3test"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/dedup/leakscan"
	"github.com/imgfs/imgfs/fs/control"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// repoRoot is the module root (the directory above integration/).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// imgfsBin returns the path of the imgfs binary, building it once per test process.
func imgfsBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("IMGFS_BIN"); p != "" {
			binPath, binErr = filepath.Abs(p)
			return
		}
		binDir, binErr = os.MkdirTemp("", "imgfs-bin")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "imgfs")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/imgfs")
		cmd.Dir = repoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/imgfs: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// need skips the test when a tool is missing, or fails it under CI=true.
func need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		var err error
		if strings.HasPrefix(tool, "/") {
			_, err = os.Stat(tool)
		} else {
			_, err = exec.LookPath(tool)
		}
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required (CI=true): %v; scripts/setup.sh installs it", tool, err)
			}
			t.Skipf("%s not available: %v", tool, err)
		}
	}
}

// needFUSE checks what a real mount needs.
func needFUSE(t testing.TB) {
	t.Helper()
	need(t, "fusermount3", "/dev/fuse")
}

// s3Starter starts a real S3 server (versitygw, backend/s3/s3test) for a test and returns a
// store URL, the environment (credentials) imgfs needs, and the server's data folder (it
// keeps objects as plain files, so the leak scan reads them). It skips the test when
// versitygw is missing (fails under CI=true).
var s3Starter = func(t testing.TB) (url string, env []string, dataDir string) {
	return s3test.Start(t)
}

// vaultOptions configure startVault.
type vaultOptions struct {
	// Store is a store URL; empty means a fresh local store in a temporary directory, or
	// S3 when IMGFS_TEST_STORE=s3.
	Store string
	// Passphrase; empty means a fixed test passphrase.
	Passphrase string
	// MountArgs are extra arguments for imgfs mount (e.g. --read-only).
	MountArgs []string
	// Env is added to the environment of every imgfs command.
	Env []string
	// NoMount creates the vault only; call Mount() yourself.
	NoMount bool
	// DefaultStore uses the default local store ($XDG_DATA_HOME/imgfs/store of the vault's
	// own XDG_DATA_HOME) without imgfs init: the first mount creates the vault.
	DefaultStore bool
}

// Mount is a vault and (while mounted) its mount.
type Mount struct {
	t        testing.TB
	Bin      string
	Root     string // per-vault temp root: home, xdg dirs, store, caches
	Dir      string // the mountpoint
	StoreURL string
	StoreDir string // where the store keeps its objects as files (local store, versitygw data)
	Cache    string // the current cache dir
	PassFile string
	env      []string
	args     []string
	mounted  bool
	caches   int

	outMu   sync.Mutex
	outputs bytes.Buffer // stdout and stderr of every imgfs command (scanned for keys, T10)
}

// startVault creates a vault (imgfs init) and mounts it; everything is torn down in t.Cleanup.
func startVault(t testing.TB, opts vaultOptions) *Mount {
	t.Helper()
	needFUSE(t)
	bin := imgfsBin(t)
	root := t.TempDir()
	// A short runtime dir: unix socket paths are limited to 108 bytes.
	rt, err := os.MkdirTemp("", "imgfs-rt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	m := &Mount{t: t, Bin: bin, Root: root, Dir: filepath.Join(root, "mnt"), PassFile: filepath.Join(root, "pass")}
	for _, d := range []string{"home", "data", "cache", "config", "mnt"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	pass := opts.Passphrase
	if pass == "" {
		pass = "correct horse battery staple"
	}
	if err := os.WriteFile(m.PassFile, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.env = []string{
		"HOME=" + filepath.Join(root, "home"),
		"XDG_DATA_HOME=" + filepath.Join(root, "data"),
		"XDG_CACHE_HOME=" + filepath.Join(root, "cache"),
		"XDG_CONFIG_HOME=" + filepath.Join(root, "config"),
		"IMGFS_RUNTIME_DIR=" + rt,
		"IMGFS_PASSPHRASE_FILE=" + m.PassFile,
		"IMGFS_KDF_MEMORY_KIB=8192", // the keyring's floor: fast unlocks in tests
	}
	m.env = append(m.env, opts.Env...)
	m.env = append(m.env, "IMGFS_STORE=")
	switch {
	case opts.DefaultStore:
		m.StoreDir = filepath.Join(root, "data", "imgfs", "store")
	case opts.Store != "":
		m.StoreURL = opts.Store
		if !strings.HasPrefix(opts.Store, "s3:") {
			m.StoreDir = opts.Store
		}
	case os.Getenv("IMGFS_TEST_STORE") == "s3":
		url, env, data := s3Starter(t)
		m.StoreURL = url
		m.StoreDir = data
		m.env = append(m.env, env...)
	default:
		m.StoreDir = filepath.Join(root, "store")
		m.StoreURL = m.StoreDir
	}
	if m.StoreURL != "" {
		m.args = []string{"--store", m.StoreURL}
	}
	m.args = append(m.args, opts.MountArgs...)
	m.Cache = m.newCacheDir()
	t.Cleanup(m.cleanup)
	if !opts.DefaultStore {
		m.Imgfs(t, "init", "--store", m.StoreURL)
	}
	if !opts.NoMount {
		m.Mount()
	}
	return m
}

func (m *Mount) newCacheDir() string {
	m.caches++
	return filepath.Join(m.Root, "cache", fmt.Sprintf("c%d", m.caches))
}

// Env is the environment imgfs commands of this vault run with.
func (m *Mount) Env() []string { return append(os.Environ(), m.env...) }

// Command returns an *exec.Cmd for the imgfs binary with the vault's environment.
func (m *Mount) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, m.Bin, args...)
	cmd.Env = m.Env()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// TryImgfs runs imgfs with args and returns stdout, stderr and the error (exit status).
func (m *Mount) TryImgfs(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := m.Command(ctx, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	m.outMu.Lock()
	m.outputs.Write(so.Bytes())
	m.outputs.Write(se.Bytes())
	m.outMu.Unlock()
	return so.String(), se.String(), err
}

// Imgfs runs imgfs with args and fails the test if it fails; it returns stdout.
func (m *Mount) Imgfs(t testing.TB, args ...string) string {
	t.Helper()
	so, se, err := m.TryImgfs(args...)
	if err != nil {
		m.dumpLog(t)
		t.Fatalf("imgfs %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, so, se)
	}
	return so
}

// MountArgs are the arguments Mount passes before the mountpoint.
func (m *Mount) MountArgs() []string {
	return append(append([]string{"mount"}, m.args...), "--cache", m.Cache)
}

// ControlSocket is the path of the mount's control socket (docs: fs/control).
func (m *Mount) ControlSocket() string {
	rt := ""
	for _, kv := range m.env {
		if v, ok := strings.CutPrefix(kv, "IMGFS_RUNTIME_DIR="); ok {
			rt = v
		}
	}
	sum := sha256.Sum256([]byte(control.CanonicalMountpoint(m.Dir)))
	return filepath.Join(rt, hex.EncodeToString(sum[:])[:16]+".sock")
}

// Mount runs imgfs mount (which returns once the mount is ready).
func (m *Mount) Mount() {
	m.t.Helper()
	if m.mounted {
		m.t.Fatal("harness: already mounted")
	}
	m.Imgfs(m.t, append(m.MountArgs(), m.Dir)...)
	m.mounted = true
}

// TryMount is Mount that returns the error (and stderr) instead of failing.
func (m *Mount) TryMount(extra ...string) (string, error) {
	args := append(append(m.MountArgs(), extra...), m.Dir)
	_, se, err := m.TryImgfs(args...)
	if err == nil {
		m.mounted = true
	}
	return se, err
}

// Umount runs imgfs umount and fails the test if it fails.
func (m *Mount) Umount() {
	m.t.Helper()
	m.Imgfs(m.t, "umount", m.Dir)
	m.mounted = false
	if isMountpoint(m.Dir) {
		m.t.Fatalf("%s still mounted after imgfs umount", m.Dir)
	}
}

// Remount unmounts and mounts again with the same cache.
func (m *Mount) Remount() {
	m.t.Helper()
	m.Umount()
	m.Mount()
}

// RemountFresh unmounts and mounts with a new, empty cache dir (as a second machine would).
func (m *Mount) RemountFresh() {
	m.t.Helper()
	m.Umount()
	m.Cache = m.newCacheDir()
	m.Mount()
}

// Status is imgfs status --json.
func (m *Mount) Status() map[string]any {
	m.t.Helper()
	out := m.Imgfs(m.t, "status", "--json", m.Dir)
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		m.t.Fatalf("imgfs status --json: %v: %s", err, out)
	}
	return st
}

// Sync runs imgfs sync.
func (m *Mount) Sync() {
	m.t.Helper()
	m.Imgfs(m.t, "sync", m.Dir)
}

// DaemonPID is the pid of the serving daemon.
func (m *Mount) DaemonPID() int {
	m.t.Helper()
	return int(m.Status()["pid"].(float64))
}

// Kill9 kills the daemon with SIGKILL (a crash) and clears the dead mount.
func (m *Mount) Kill9() {
	m.t.Helper()
	pid := m.DaemonPID()
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, 10*time.Second)
	exec.Command("fusermount3", "-u", "-z", m.Dir).Run()
	m.mounted = false
}

// LogPath is the daemon log of the current cache.
func (m *Mount) LogPath() string { return filepath.Join(m.Cache, "mount.log") }

func (m *Mount) dumpLog(t testing.TB) {
	b, err := os.ReadFile(m.LogPath())
	if err != nil {
		return
	}
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	t.Logf("daemon log %s (tail):\n%s", m.LogPath(), b)
}

// cleanup always leaves no mount behind: imgfs umount, else a lazy unmount and SIGKILL.
// Then it scans what the vault's commands and daemons printed for key material (T10).
func (m *Mount) cleanup() {
	if m.t.Failed() {
		m.dumpLog(m.t)
	}
	defer m.scanForSecrets()
	if !isMountpoint(m.Dir) {
		return
	}
	pid := 0
	if so, _, err := m.TryImgfs("status", "--json", m.Dir); err == nil {
		var st struct{ PID int }
		json.Unmarshal([]byte(so), &st)
		pid = st.PID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := m.Command(ctx, "umount", m.Dir)
	if out, err := cmd.CombinedOutput(); err != nil || isMountpoint(m.Dir) {
		m.t.Logf("cleanup: imgfs umount %s: %v: %s; forcing", m.Dir, err, out)
		exec.Command("fusermount3", "-u", "-z", m.Dir).Run()
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if pid > 0 {
		waitGone(pid, 10*time.Second)
	}
}

// scanForSecrets reports secretScan's hits as a test error (T10 in
// docs/security-tests.md, for every vault of the suite).
func (m *Mount) scanForSecrets() {
	if hits, k := m.secretScan(); len(hits) > 0 {
		m.t.Errorf("T10: key material in command output or daemon logs (vault keys scanned: %v):\n%s", k != nil, leakscan.Format(hits))
	}
}

// secretScan searches the output of every imgfs command of this vault and every daemon log
// (<cache>/mount.log) for the passphrase and, on a local store, the vault's keys (unlocked
// here; k is nil otherwise) in raw, hex, base64, base32 and %v forms.
func (m *Mount) secretScan() (hits []leakscan.Hit, k *keyring.Keys) {
	pass, err := os.ReadFile(m.PassFile)
	if err != nil {
		return nil, nil
	}
	pass = bytes.TrimSuffix(pass, []byte("\n"))
	s := leakscan.New()
	s.AddSecret("passphrase", pass)
	if m.StoreDir != "" && !strings.HasPrefix(m.StoreURL, "s3:") {
		if st, err := local.Open(m.StoreDir); err == nil {
			if k, err = keyring.Unlock(context.Background(), st, pass); err == nil {
				for label, key := range map[string][]byte{"MK": k.MasterKey, "CS": k.ConvergenceSecret,
					"K_meta": k.MetaKey, "K_hdr": k.HeaderKey, "K_local": k.LocalKey} {
					s.AddSecret(label, key)
				}
			} else {
				k = nil
			}
			st.Close()
		}
	}
	m.outMu.Lock()
	hits = s.ScanBytes("imgfs command output", m.outputs.Bytes())
	outBytes := m.outputs.Len()
	m.outMu.Unlock()
	logs, _ := filepath.Glob(filepath.Join(m.Root, "cache", "*", "mount.log"))
	var logBytes int64
	for _, l := range logs {
		h, err := s.ScanFile(l)
		if err != nil {
			m.t.Errorf("T10 scan of %s: %v", l, err)
		}
		if fi, err := os.Stat(l); err == nil {
			logBytes += fi.Size()
		}
		hits = append(hits, h...)
	}
	m.t.Logf("T10 scan: %d bytes of command output, %d bytes in %d daemon logs, vault keys unlocked: %v", outBytes, logBytes, len(logs), k != nil)
	return hits, k
}

// TestSecretScanControl: the suite-wide T10 scan unlocks the vault and finds a key planted
// in a daemon log (positive control), and finds nothing without it.
func TestSecretScanControl(t *testing.T) {
	m := startVault(t, vaultOptions{NoMount: true})
	hits, k := m.secretScan()
	if len(hits) != 0 || k == nil {
		t.Fatalf("clean vault: %d hits, keys unlocked: %v", len(hits), k != nil)
	}
	planted := filepath.Join(m.Root, "cache", "planted", "mount.log")
	os.MkdirAll(filepath.Dir(planted), 0o700)
	if err := os.WriteFile(planted, []byte("level=INFO msg=oops cs="+hex.EncodeToString(k.ConvergenceSecret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if hits, _ := m.secretScan(); len(hits) == 0 {
		t.Fatal("positive control: a hex convergence secret in a daemon log was not found")
	}
	os.Remove(planted)
}

func waitGone(pid int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mountedFSType returns the file system type mounted on dir (the last, visible one when
// several are stacked) and whether dir is a mount point: the mount table, through
// moby/sys/mountinfo, which reads /proc/self/mountinfo and unescapes its paths.
func mountedFSType(dir string) (string, bool) {
	ms, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) { return i.Mountpoint != dir, false })
	if err != nil || len(ms) == 0 {
		return "", false
	}
	return ms[len(ms)-1].FSType, true
}

// isMountpoint reports whether dir is a mount point.
func isMountpoint(dir string) bool {
	_, ok := mountedFSType(dir)
	return ok
}

// sh runs a shell command line in dir (with a timeout) and fails the test on error.
func sh(t testing.TB, dir, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-ec", script)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// entry is one path of a tree manifest.
type entry struct {
	Mode  fs.FileMode
	Size  int64
	Mtime int64 // seconds; compared only where the copy preserves times
	Hash  string
	Link  string
}

// manifest walks root (never following symlinks) and describes every path under it,
// reading every regular file fully (sha256). Names in skip at the top level are left out.
func manifest(t testing.TB, root string, skip ...string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		for _, s := range skip {
			if rel == s {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{Mode: fi.Mode(), Mtime: fi.ModTime().Unix()}
		switch {
		case fi.Mode().IsRegular():
			e.Size = fi.Size()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			n, err := io.Copy(h, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			if n != fi.Size() {
				return fmt.Errorf("read %s: %d bytes, stat says %d", p, n, fi.Size())
			}
			e.Hash = hex.EncodeToString(h.Sum(nil))
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Link, err = os.Readlink(p)
			if err != nil {
				return err
			}
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("manifest %s: %v", root, err)
	}
	return out
}

// compareTrees fails the test where got differs from want: the set of paths, types, sizes,
// contents and link targets; permission bits and mtimes too when the flags say so.
func compareTrees(t testing.TB, what string, want, got map[string]entry, perms, mtimes bool) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, "missing "+p)
		case w.Mode.Type() != g.Mode.Type():
			diffs = append(diffs, fmt.Sprintf("%s: type %v, want %v", p, g.Mode.Type(), w.Mode.Type()))
		case w.Size != g.Size || w.Hash != g.Hash:
			diffs = append(diffs, fmt.Sprintf("%s: size %d sha256 %.12s, want %d %.12s", p, g.Size, g.Hash, w.Size, w.Hash))
		case w.Link != g.Link:
			diffs = append(diffs, fmt.Sprintf("%s: link %q, want %q", p, g.Link, w.Link))
		case perms && w.Mode.Type()&fs.ModeSymlink == 0 && w.Mode.Perm() != g.Mode.Perm():
			diffs = append(diffs, fmt.Sprintf("%s: mode %v, want %v", p, g.Mode, w.Mode))
		case mtimes && w.Mode.Type()&fs.ModeSymlink == 0 && !w.Mode.IsDir() && w.Mtime != g.Mtime:
			diffs = append(diffs, fmt.Sprintf("%s: mtime %d, want %d", p, g.Mtime, w.Mtime))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, "unexpected "+p)
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		if len(diffs) > 30 {
			diffs = append(diffs[:30], fmt.Sprintf("... and %d more", len(diffs)-30))
		}
		t.Fatalf("%s: trees differ:\n  %s", what, strings.Join(diffs, "\n  "))
	}
}

// prefixed returns the entries of m under dir/, re-keyed relative to dir.
func prefixed(m map[string]entry, dir string) map[string]entry {
	out := map[string]entry{}
	for p, e := range m {
		if r, ok := strings.CutPrefix(p, dir+"/"); ok {
			out[r] = e
		}
	}
	return out
}

// convertBin is the real ImageMagick (/usr/local/bin/convert may be a stand-in).
const convertBin = "/usr/bin/convert"

// makeImages writes n deterministic photos-like images into dir with ImageMagick: JPEGs of
// a plasma fractal (seeded) in sizes from 320x240 up to 1600x1200, and a PNG every fourth.
func makeImages(t testing.TB, dir string, n int, prefix string) []string {
	t.Helper()
	need(t, convertBin)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sizes := []string{"320x240", "800x600", "1600x1200", "640x480"}
	var names []string
	for i := 0; i < n; i++ {
		ext := "jpg"
		if i%4 == 3 {
			ext = "png"
		}
		name := fmt.Sprintf("%s%03d.%s", prefix, i, ext)
		out, err := exec.Command(convertBin, "-seed", fmt.Sprint(1000+i), "-size", sizes[i%len(sizes)],
			"plasma:fractal", "-quality", "92", filepath.Join(dir, name)).CombinedOutput()
		if err != nil {
			t.Fatalf("convert: %v: %s", err, out)
		}
		names = append(names, name)
	}
	return names
}
