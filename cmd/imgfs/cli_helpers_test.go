package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/dedup/leakscan"
)

// The CLI tests exec the real binary, built once in TestMain, so exit codes, stdout and
// stderr are what a user sees.
var imgfsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imgfs-cli-test")
	if err != nil {
		panic(err)
	}
	imgfsBin = filepath.Join(dir, "imgfs")
	out, err := exec.Command("go", "build", "-o", imgfsBin, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		os.RemoveAll(dir)
		panic("building imgfs: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one isolated user: its own HOME, XDG dirs and passphrase file.
type env struct {
	t     *testing.T
	dir   string
	store string
	vars  []string

	outputs bytes.Buffer    // stdout and stderr of every command (scanned for secrets, T10)
	passes  map[string]bool // every passphrase handed to a command
}

func newEnv(t *testing.T) *env {
	t.Helper()
	d := t.TempDir()
	e := &env{t: t, dir: d, store: filepath.Join(d, "store"), passes: map[string]bool{}}
	t.Cleanup(e.scanForSecrets)
	e.vars = []string{
		"HOME=" + filepath.Join(d, "home"),
		"XDG_DATA_HOME=" + filepath.Join(d, "data"),
		"XDG_CACHE_HOME=" + filepath.Join(d, "cache"),
		"IMGFS_KDF_MEMORY_KIB=65536", // the keyring floor: fast tests
		"PATH=" + os.Getenv("PATH"),
	}
	return e
}

// passFile writes a passphrase file and returns its path.
func (e *env) passFile(name, pass string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	e.passes[pass] = true
	if err := os.WriteFile(p, []byte(pass+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

type result struct {
	code           int
	stdout, stderr string
}

// run execs imgfs with args and extra environment variables; stdin is empty (not a terminal).
func (e *env) run(extra []string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(imgfsBin, args...)
	cmd.Env = append(append([]string{}, e.vars...), extra...)
	for _, v := range extra {
		for _, name := range []string{"IMGFS_PASSPHRASE=", "IMGFS_NEW_PASSPHRASE="} {
			if p, ok := strings.CutPrefix(v, name); ok {
				e.passes[p] = true
			}
		}
	}
	cmd.Dir = e.dir
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	e.outputs.Write(so.Bytes())
	e.outputs.Write(se.Bytes())
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("exec imgfs: %v", err)
	}
	return result{code: code, stdout: so.String(), stderr: se.String()}
}

// scanForSecrets is T10 (docs/security-tests.md) for the CLI tests: no passphrase of 8 or more
// bytes (shorter ones are ordinary words) and, when one unlocks e.store, none of the vault's
// keys in raw, hex, base64, base32 or %v form in anything a command printed.
func (e *env) scanForSecrets() {
	out := e.outputs.Bytes()
	s := leakscan.New()
	for p := range e.passes {
		if len(p) >= 8 && bytes.Contains(out, []byte(p)) {
			e.t.Errorf("T10: a passphrase (%d bytes) appears in command output", len(p))
		}
		if st, err := local.Open(e.store); err == nil {
			if k, err := keyring.Unlock(context.Background(), st, []byte(p)); err == nil {
				for label, key := range map[string][]byte{"MK": k.MasterKey, "CS": k.ConvergenceSecret,
					"K_meta": k.MetaKey, "K_hdr": k.HeaderKey, "K_local": k.LocalKey} {
					s.AddSecret(label, key)
				}
			}
			st.Close()
		}
	}
	if hits := s.ScanBytes("imgfs command output", out); len(hits) > 0 {
		e.t.Errorf("T10: key material in command output:\n%s", leakscan.Format(hits))
	}
}

// must runs imgfs and fails the test unless it exits 0.
func (e *env) must(extra []string, args ...string) result {
	e.t.Helper()
	r := e.run(extra, args...)
	if r.code != 0 {
		e.t.Fatalf("imgfs %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// withPass is the environment that supplies passphrase pass through a file.
func (e *env) withPass(pass string) []string {
	return []string{"IMGFS_PASSPHRASE_FILE=" + e.passFile("pass-"+safeName(pass), pass)}
}

func safeName(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// initVault creates a vault in e.store with passphrase pass.
func (e *env) initVault(pass string) {
	e.t.Helper()
	e.must(e.withPass(pass), "init", "--store", e.store)
}

// oneErrorLine checks the documented error format: exactly one line "imgfs: ...".
func oneErrorLine(t *testing.T, r result) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "imgfs: ") {
		t.Fatalf("stderr is not one line \"imgfs: ...\": %q", r.stderr)
	}
	return lines[0]
}

// importedVault makes a vault (passphrase "pw") holding one imported file, /a.bin (from
// e.dir/src), and
// opens and unlocks its store in this process (closed at cleanup). It returns the
// passphrase's environment for commands, the store and the keys.
func (e *env) importedVault() ([]string, *local.Store, *keyring.Keys) {
	e.t.Helper()
	src := filepath.Join(e.dir, "src")
	writeFile(e.t, filepath.Join(src, "a.bin"), randBytes(1000), 0o644, time.Now())
	e.initVault("pw")
	pw := e.withPass("pw")
	e.must(pw, "import", "--store", e.store, src, "/")
	store, err := local.Open(e.store)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { store.Close() })
	keys, err := keyring.Unlock(context.Background(), store, []byte("pw"))
	if err != nil {
		e.t.Fatal(err)
	}
	return pw, store, keys
}
