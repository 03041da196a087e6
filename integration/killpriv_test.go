package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestKillSUIDGID: the mount asks the kernel to leave clearing set-user-ID and set-group-ID
// to it (fs.HandleKillPriv, so that writes skip a security.capability lookup each), so the
// file system must do what the kernel did before: a write or an O_TRUNC open by a process
// without CAP_FSETID clears set-user-ID, and set-group-ID when the file is group-executable;
// a process with CAP_FSETID (root here) keeps them; the data is written either way.
func TestKillSUIDGID(t *testing.T) {
	need(t, "capsh")
	m := startVault(t, vaultOptions{})
	p := filepath.Join(m.Dir, "tool.sh")
	if err := os.WriteFile(p, []byte("a\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unprivileged := func(script string) {
		t.Helper()
		cmd := exec.Command("capsh", "--drop=cap_fsetid", "--", "-c", script)
		cmd.Dir = m.Dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	mode := func() os.FileMode {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid)
	}
	chmod := func(m os.FileMode) {
		t.Helper()
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	appendRoot := func() {
		t.Helper()
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("r\n"); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name       string
		from, want os.FileMode
		do         func()
	}{
		{"root write keeps both", 0o755 | os.ModeSetuid | os.ModeSetgid, 0o755 | os.ModeSetuid | os.ModeSetgid, appendRoot},
		{"write clears both", 0o755 | os.ModeSetuid | os.ModeSetgid, 0o755, func() { unprivileged("echo u >> tool.sh") }},
		{"write keeps setgid without group exec", 0o745 | os.ModeSetuid | os.ModeSetgid, 0o745 | os.ModeSetgid, func() { unprivileged("echo u >> tool.sh") }},
		{"open without O_TRUNC keeps both", 0o755 | os.ModeSetuid | os.ModeSetgid, 0o755 | os.ModeSetuid | os.ModeSetgid, func() { unprivileged("exec 3<>tool.sh") }},
		{"O_TRUNC clears both", 0o755 | os.ModeSetuid | os.ModeSetgid, 0o755, func() { unprivileged(": > tool.sh; echo t >> tool.sh") }},
	} {
		chmod(c.from)
		c.do()
		if got := mode(); got != c.want {
			t.Errorf("%s: mode %v, want %v", c.name, got, c.want)
		}
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "t\n" {
		t.Fatalf("content %q, %v; want \"t\\n\"", b, err)
	}
	chmod(0o755 | os.ModeSetuid)
	unprivileged("echo v >> tool.sh")
	m.Remount()
	if got := mode(); got != 0o755 {
		t.Fatalf("after a remount: mode %v, want %v (the cleared bit is stored)", got, os.FileMode(0o755))
	}
}
