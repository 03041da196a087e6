package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/dedup/keyring"
)

func slotCount(t *testing.T, dir string) int {
	t.Helper()
	s, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	if err := s.List(context.Background(), keyring.SlotPrefix, func(backend.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func listAll(t *testing.T, dir string) []string {
	t.Helper()
	s, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var names []string
	if err := s.List(context.Background(), "", func(i backend.Info) error { names = append(names, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	return names
}

func unlockWith(t *testing.T, dir, pass string) error {
	t.Helper()
	s, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, err := keyring.Unlock(context.Background(), s, []byte(pass))
	if err == nil {
		k.Wipe()
	}
	return err
}

// wrongPassCommands are the commands that unlock the vault.
func wrongPassCommands(e *env) [][]string {
	return [][]string{
		{"passwd", "--store", e.store},
		{"passwd", "--add", "--store", e.store},
		{"passwd", "--remove", "--store", e.store},
		{"ls", "--store", e.store},
		{"check", "--store", e.store, "--read-data"},
		{"gc", "--store", e.store},
		{"import", "--store", e.store, e.dir, "/x"},
		{"export", "--store", e.store, "/", filepath.Join(e.dir, "out")},
	}
}

func TestInitAndWrongPassphrase(t *testing.T) {
	e := newEnv(t)
	r := e.must(e.withPass("correct horse"), "init", "--store", e.store)
	if !strings.Contains(r.stdout, "created vault") || !strings.Contains(r.stdout, "convergence: vault") {
		t.Fatalf("init output: %q", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, "correct horse") {
		t.Fatal("passphrase echoed")
	}
	if n := slotCount(t, e.store); n != 1 {
		t.Fatalf("%d key slots after init, want 1", n)
	}
	// A second init refuses (exit 4) and leaves the vault alone.
	r = e.run(e.withPass("other"), "init", "--store", e.store)
	if r.code != exitVault || !strings.Contains(oneErrorLine(t, r), "already exists") {
		t.Fatalf("second init: %+v", r)
	}
	before := listAll(t, e.store)

	// Wrong passphrase (T21): exit 3, one generic line, nothing on stdout, nothing written.
	for _, args := range wrongPassCommands(e) {
		r = e.run(append(e.withPass("wrong"), "IMGFS_NEW_PASSPHRASE=whatever"), args...)
		if r.code != exitPassphrase {
			t.Fatalf("%v with a wrong passphrase: exit %d, want %d (%s)", args, r.code, exitPassphrase, r.stderr)
		}
		if line := oneErrorLine(t, r); line != "imgfs: "+keyring.ErrWrongPassphrase.Error() {
			t.Fatalf("%v: message %q is not the generic one", args, line)
		}
		if r.stdout != "" {
			t.Fatalf("%v: stdout %q", args, r.stdout)
		}
	}
	if after := listAll(t, e.store); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("a wrong passphrase changed the store: %v -> %v", before, after)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "cache", "imgfs")); err == nil {
		t.Fatal("a wrong passphrase created a cache directory")
	}
}

func TestPassphraseSources(t *testing.T) {
	e := newEnv(t)
	// No passphrase source and no terminal: exit 3 with the documented advice.
	r := e.run(nil, "init", "--store", e.store)
	if r.code != exitPassphrase || !strings.Contains(oneErrorLine(t, r), "no passphrase: set IMGFS_PASSPHRASE_FILE or run on a terminal") {
		t.Fatalf("no source: %+v", r)
	}
	// IMGFS_PASSPHRASE works; --passphrase-file wins over the environment.
	e.must([]string{"IMGFS_PASSPHRASE=env secret"}, "init", "--store", e.store)
	f := e.passFile("p", "env secret")
	e.must([]string{"IMGFS_PASSPHRASE=wrong"}, "passwd", "--add", "--store", e.store, "--passphrase-file", f, "--new-passphrase-file", e.passFile("q", "second secret"))
	if n := slotCount(t, e.store); n != 2 {
		t.Fatalf("%d slots after --add, want 2", n)
	}
	// The passphrase is never accepted on the command line.
	r = e.run(nil, "passwd", "--store", e.store, "--passphrase", "env secret")
	if r.code != exitUsage {
		t.Fatalf("--passphrase on argv: exit %d, want %d", r.code, exitUsage)
	}
	// No vault: exit 4 before any passphrase is asked.
	r = e.run(nil, "passwd", "--store", filepath.Join(e.dir, "empty"))
	if r.code != exitVault || !strings.Contains(oneErrorLine(t, r), "imgfs init") {
		t.Fatalf("no vault: %+v", r)
	}
}

func TestPasswdChange(t *testing.T) {
	e := newEnv(t)
	e.initVault("old pass")
	r := e.must(append(e.withPass("old pass"), "IMGFS_NEW_PASSPHRASE_FILE="+e.passFile("new", "new pass")), "passwd", "--store", e.store)
	if !strings.Contains(r.stdout, "changed") {
		t.Fatalf("passwd output %q", r.stdout)
	}
	if n := slotCount(t, e.store); n != 1 {
		t.Fatalf("%d slots after change, want exactly 1 (T24)", n)
	}
	// Old fails, new works.
	if err := unlockWith(t, e.store, "old pass"); err != keyring.ErrWrongPassphrase {
		t.Fatalf("old passphrase after change: %v", err)
	}
	if err := unlockWith(t, e.store, "new pass"); err != nil {
		t.Fatalf("new passphrase after change: %v", err)
	}
	if r := e.run(append(e.withPass("old pass"), "IMGFS_NEW_PASSPHRASE=x"), "passwd", "--add", "--store", e.store); r.code != exitPassphrase {
		t.Fatalf("passwd with the old passphrase: exit %d", r.code)
	}

	// --add, then --remove of the original; --remove of the last one is refused.
	e.must(append(e.withPass("new pass"), "IMGFS_NEW_PASSPHRASE=third"), "passwd", "--add", "--store", e.store)
	e.must(e.withPass("new pass"), "passwd", "--remove", "--store", e.store)
	if err := unlockWith(t, e.store, "new pass"); err != keyring.ErrWrongPassphrase {
		t.Fatalf("removed passphrase: %v", err)
	}
	if err := unlockWith(t, e.store, "third"); err != nil {
		t.Fatalf("remaining passphrase: %v", err)
	}
	r = e.run([]string{"IMGFS_PASSPHRASE=third"}, "passwd", "--remove", "--store", e.store)
	if r.code != exitUsage || !strings.Contains(oneErrorLine(t, r), "last passphrase") {
		t.Fatalf("removing the last passphrase: %+v", r)
	}
	if n := slotCount(t, e.store); n != 1 {
		t.Fatalf("%d slots, want 1", n)
	}
	if r := e.run(e.withPass("third"), "passwd", "--add", "--remove", "--store", e.store); r.code != exitUsage {
		t.Fatalf("--add --remove: exit %d", r.code)
	}
}

func TestInitConvergenceModes(t *testing.T) {
	e := newEnv(t)
	// group needs a 32-byte secret file.
	r := e.run(e.withPass("p"), "init", "--store", e.store, "--convergence", "group")
	if r.code != exitUsage {
		t.Fatalf("group without secret: %+v", r)
	}
	bad := filepath.Join(e.dir, "bad.key")
	os.WriteFile(bad, []byte("short"), 0o600)
	if r := e.run(e.withPass("p"), "init", "--store", e.store, "--convergence", "group", "--convergence-secret-file", bad); r.code != exitUsage {
		t.Fatalf("short secret: %+v", r)
	}
	good := filepath.Join(e.dir, "group.key")
	os.WriteFile(good, []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	r = e.must(e.withPass("p"), "init", "--store", e.store, "--convergence", "group", "--convergence-secret-file", good)
	if !strings.Contains(r.stdout, "convergence: group") {
		t.Fatalf("group init: %q", r.stdout)
	}
	// global warns on stderr about confirmation attacks.
	r = e.must(e.withPass("p"), "init", "--store", filepath.Join(e.dir, "global"), "--convergence", "global")
	if !strings.Contains(r.stderr, "confirmation attack") || !strings.Contains(r.stdout, "convergence: global") {
		t.Fatalf("global init: %+v", r)
	}
	if r := e.run(e.withPass("p"), "init", "--store", filepath.Join(e.dir, "x"), "--convergence", "bogus"); r.code != exitUsage {
		t.Fatalf("bogus mode: %+v", r)
	}
}

func TestUsageErrors(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{{"nosuchcommand"}, {"init", "--nosuchflag"}, {"init", "extra-arg"}} {
		r := e.run(nil, args...)
		if r.code != exitUsage {
			t.Fatalf("%v: exit %d, want %d (%s)", args, r.code, exitUsage, r.stderr)
		}
		oneErrorLine(t, r)
	}
	if r := e.must(nil, "--help"); !strings.Contains(r.stdout, "passwd") {
		t.Fatalf("--help: %q", r.stdout)
	}
}

func TestUnreachableStore(t *testing.T) {
	e := newEnv(t)
	// A store path under a regular file cannot be opened.
	f := filepath.Join(e.dir, "file")
	os.WriteFile(f, []byte("x"), 0o600)
	r := e.run(e.withPass("p"), "init", "--store", filepath.Join(f, "store"))
	if r.code != exitUnreachable {
		t.Fatalf("bad store: exit %d, want %d (%s)", r.code, exitUnreachable, r.stderr)
	}
	oneErrorLine(t, r)
}

// TestTerminalPrompt runs imgfs on a pseudo-terminal (script(1)): the passphrase is asked
// without echo, twice for init, and a mismatch is refused.
func TestTerminalPrompt(t *testing.T) {
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("script(1) (util-linux) missing")
		}
		t.Skip("script(1) (util-linux) missing")
	}
	e := newEnv(t)
	type step struct{ prompt, answer string }
	runPTY := func(args string, steps []step) (string, int) {
		t.Helper()
		cmd := exec.Command(scriptBin, "-qec", imgfsBin+" "+args, "/dev/null")
		cmd.Env = e.vars
		cmd.Dir = e.dir
		in, _ := cmd.StdinPipe()
		outR, outW := io.Pipe()
		cmd.Stdout, cmd.Stderr = outW, outW
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		seen := &syncBuf{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 256)
			for {
				n, err := outR.Read(buf)
				seen.write(buf[:n])
				if err != nil {
					return
				}
			}
		}()
		for _, s := range steps {
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(seen.String(), s.prompt) {
				if time.Now().After(deadline) {
					t.Fatalf("no prompt %q; output %q", s.prompt, seen.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			io.WriteString(in, s.answer+"\r")
		}
		err := cmd.Wait()
		outW.Close()
		<-done
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return seen.String(), code
	}
	out, code := runPTY("init --store st", []step{{"Passphrase: ", "tty secret"}, {"Repeat passphrase: ", "tty secret"}})
	if code != 0 || !strings.Contains(out, "created vault") {
		t.Fatalf("init on a terminal: exit %d, %q", code, out)
	}
	if strings.Contains(out, "tty secret") {
		t.Fatalf("passphrase echoed: %q", out)
	}
	if err := unlockWith(t, filepath.Join(e.dir, "st"), "tty secret"); err != nil {
		t.Fatalf("unlock with the typed passphrase: %v", err)
	}
	out, code = runPTY("init --store st2", []step{{"Passphrase: ", "one"}, {"Repeat passphrase: ", "two"}})
	if code != exitPassphrase || !strings.Contains(out, "do not match") {
		t.Fatalf("mismatch: exit %d, %q", code, out)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) write(p []byte) {
	s.mu.Lock()
	s.b.Write(p)
	s.mu.Unlock()
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// T24, concurrent change: two clients change the same passphrase at once. Whatever the
// interleaving, each exits 0, or with a clear conflict (1) or wrong-passphrase (3) error;
// the old passphrase no longer works and the vault keeps at least one working passphrase.
func TestPasswdConcurrent(t *testing.T) {
	e := newEnv(t)
	e.initVault("old")
	results := make(chan result, 2)
	for _, np := range []string{"new-a", "new-b"} {
		extra := append(e.withPass("old"), "IMGFS_NEW_PASSPHRASE="+np)
		go func() {
			cmd := exec.Command(imgfsBin, "passwd", "--store", e.store)
			cmd.Env = append(append([]string{}, e.vars...), extra...)
			var so, se strings.Builder
			cmd.Stdout, cmd.Stderr = &so, &se
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			results <- result{code: code, stdout: so.String(), stderr: se.String()}
		}()
	}
	for i := 0; i < 2; i++ {
		r := <-results
		switch {
		case r.code == 0:
		case r.code == exitError && strings.Contains(r.stderr, "conflict: another client changed the passphrase"):
		case r.code == exitPassphrase:
		default:
			t.Fatalf("concurrent passwd: exit %d: %s", r.code, r.stderr)
		}
	}
	if err := unlockWith(t, e.store, "old"); err != keyring.ErrWrongPassphrase {
		t.Fatalf("old passphrase after two changes: %v", err)
	}
	okA, okB := unlockWith(t, e.store, "new-a") == nil, unlockWith(t, e.store, "new-b") == nil
	if !okA && !okB {
		t.Fatal("no passphrase works after two concurrent changes")
	}
}
