package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnvWithout(t *testing.T) {
	env := []string{"A=1", "IMGFS_PASSPHRASE=secret", "IMGFS_PASSPHRASE_FILE=/x", "IMGFS_PASSPHRASE_X=keep", "B=2"}
	got := strings.Join(envWithout(env, passphraseEnv...), " ")
	if got != "A=1 IMGFS_PASSPHRASE_X=keep B=2" {
		t.Fatalf("envWithout: %q", got)
	}
	if env[1] != "IMGFS_PASSPHRASE=secret" {
		t.Fatal("envWithout modified its input")
	}
}

// TestMain doubles as the daemon Spawn starts in TestSpawn: os.Executable is this test
// binary, run with the arguments Spawn was given.
func TestMain(m *testing.M) {
	if mode := os.Getenv("DAEMON_TEST_CHILD"); mode != "" {
		fakeDaemon(mode)
		return
	}
	os.Exit(m.Run())
}

// fakeDaemon checks what Spawn promises a daemon (its passphrase on fd 4, none in its
// environment or arguments, cwd "/") and answers on fd 3 as mode says.
func fakeDaemon(mode string) {
	ready := os.NewFile(ReadyFD, "ready")
	pass, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", PassphraseFD))
	wd, _ := os.Getwd()
	switch {
	case err != nil:
		fmt.Fprintf(ready, "error 9 reading the passphrase: %v\n", err)
	case string(pass) != "pass word":
		fmt.Fprintf(ready, "error 9 wrong passphrase on fd 4: %q\n", pass)
	case os.Getenv("IMGFS_PASSPHRASE") != "" || os.Getenv("IMGFS_PASSPHRASE_FILE") != "":
		fmt.Fprintln(ready, "error 9 a passphrase variable reached the daemon")
	case strings.Contains(strings.Join(os.Args, " "), "pass word"):
		fmt.Fprintln(ready, "error 9 the passphrase is in argv")
	case wd != "/":
		fmt.Fprintf(ready, "error 9 cwd %s\n", wd)
	case mode == "ready":
		r := NewReadiness(ready)
		r.Ready([]string{"index off\nsecond line", "another note"})
		r.Fail(3, errors.New("after ready: ignored"))
	case mode == "fail":
		NewReadiness(ready).Fail(7, errors.New("the store is busy\nreally"))
	case mode == "exit":
		fmt.Println("daemon log line")
		os.Exit(2)
	}
	os.Exit(0)
}

// TestSpawn runs the starter against a real child process: the notes and "ready", an error
// with its exit code, and a child that exits without a word.
func TestSpawn(t *testing.T) {
	for _, c := range []struct {
		mode, wantNotes string
		check           func(error) error
	}{
		{"ready", "imgfs: index off; second line\nimgfs: another note\n", func(err error) error { return err }},
		{"fail", "", func(err error) error {
			var ee *ExitError
			if !errors.As(err, &ee) || ee.Code != 7 || ee.Msg != "the store is busy; really" {
				return fmt.Errorf("got %#v (%v), want ExitError 7", err, err)
			}
			return nil
		}},
		{"exit", "", func(err error) error {
			if err == nil || !strings.Contains(err.Error(), "exited before the mount was ready") || !strings.Contains(err.Error(), "mount.log") {
				return fmt.Errorf("got %v, want an error naming the log", err)
			}
			return nil
		}},
	} {
		t.Run(c.mode, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "cache")
			var notes bytes.Buffer
			env := append(os.Environ(), "DAEMON_TEST_CHILD="+c.mode, "IMGFS_PASSPHRASE=pass word", "IMGFS_PASSPHRASE_FILE=/nonexistent")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := Spawn(ctx, SpawnOptions{Args: []string{"-test.run=^$"}, Mountpoint: "/mnt/x", CacheDir: cache,
				Passphrase: []byte("pass word"), Env: env, Notes: &notes})
			if cerr := c.check(err); cerr != nil {
				t.Fatal(cerr)
			}
			if notes.String() != c.wantNotes {
				t.Fatalf("notes %q, want %q", notes.String(), c.wantNotes)
			}
			log, rerr := os.ReadFile(filepath.Join(cache, "mount.log"))
			if rerr != nil || !strings.Contains(string(log), "imgfs mount /mnt/x (pid of the starter") {
				t.Fatalf("mount.log: %v %q", rerr, log)
			}
			if c.mode == "exit" && !strings.Contains(string(log), "daemon log line") {
				t.Fatalf("the daemon's output is not in mount.log: %q", log)
			}
		})
	}
}
