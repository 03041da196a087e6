package daemon

// The starter's side: `imgfs mount MOUNTPOINT` (without -f) re-executes itself as
// `imgfs mount -f --ready-fd 3 --passphrase-file /proc/self/fd/4 ...` in a new session with
// its output in <cache>/mount.log, hands it the passphrase through a pipe (never argv or the
// environment), and waits on the readiness pipe for "ready" or "error <exit code> <message>",
// after zero or more "note <text>" lines that it prints on the terminal (docs/cli.md).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The daemon's file descriptors for the readiness pipe and the passphrase pipe.
const (
	ReadyFD      = 3
	PassphraseFD = 4
)

// SpawnOptions say how to start a daemon.
type SpawnOptions struct {
	// Args are the daemon's arguments (after the executable): a foreground mount that reads
	// its passphrase from /proc/self/fd/PassphraseFD and reports on ReadyFD.
	Args       []string
	Mountpoint string
	CacheDir   string // the daemon's log is CacheDir/mount.log
	Passphrase []byte // written to the passphrase pipe
	// Env is the daemon's environment (paths in it absolute: the daemon runs in "/");
	// passphrase variables are removed from it.
	Env []string
	// Notes receives the daemon's notes, one line each.
	Notes io.Writer
}

// ExitError is a daemon that reported it could not mount: its exit code and message.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// passphraseEnv are the variables that may hold a passphrase, never handed to the daemon.
var passphraseEnv = []string{"IMGFS_PASSPHRASE", "IMGFS_PASSPHRASE_FILE"}

// Spawn starts the daemon in a new session and waits until it reports: nil once the mount is
// usable, an *ExitError when the daemon reported an error, another error when it could not
// be started or exited without reporting. A cancelled ctx stops the daemon (SIGTERM).
func Spawn(ctx context.Context, o SpawnOptions) error {
	if err := os.MkdirAll(o.CacheDir, 0o700); err != nil {
		return fmt.Errorf("cache directory %s: %w", o.CacheDir, err)
	}
	logPath := filepath.Join(o.CacheDir, "mount.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("daemon log %s: %w", logPath, err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	passR, passW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return err
	}

	self, err := os.Executable()
	if err != nil {
		readyW.Close()
		passR.Close()
		passW.Close()
		return err
	}
	child := exec.Command(self, o.Args...)
	child.Env = envWithout(o.Env, passphraseEnv...)
	child.Stdin = devnull
	child.Stdout = logf
	child.Stderr = logf
	child.ExtraFiles = []*os.File{readyW, passR} // fds 3 and 4 (ReadyFD, PassphraseFD)
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	child.Dir = "/"
	fmt.Fprintf(logf, "--- %s imgfs mount %s (pid of the starter %d)\n", time.Now().Format(time.RFC3339), o.Mountpoint, os.Getpid())
	if err := child.Start(); err != nil {
		readyW.Close()
		passR.Close()
		passW.Close()
		return fmt.Errorf("starting the mount daemon: %w", err)
	}
	readyW.Close()
	passR.Close()
	_, werr := passW.Write(o.Passphrase)
	passW.Close()
	if werr != nil {
		child.Process.Kill()
		child.Wait()
		return fmt.Errorf("handing the passphrase to the mount daemon: %w", werr)
	}

	type result struct {
		line  string
		notes []string
		err   error
	}
	lineCh := make(chan result, 1)
	go func() {
		var r result
		br := bufio.NewReader(readyR)
		for {
			l, err := br.ReadString('\n')
			l = strings.TrimSpace(l)
			if note, ok := strings.CutPrefix(l, "note "); ok && err == nil {
				r.notes = append(r.notes, note)
				continue
			}
			r.line, r.err = l, err
			lineCh <- r
			return
		}
	}()
	var r result
	select {
	case r = <-lineCh:
	case <-ctx.Done():
		child.Process.Signal(syscall.SIGTERM)
		child.Wait()
		return ctx.Err()
	}
	for _, n := range r.notes {
		fmt.Fprintln(o.Notes, "imgfs: "+n)
	}
	switch {
	case r.line == "ready":
		child.Process.Release()
		return nil
	case strings.HasPrefix(r.line, "error "):
		child.Wait()
		rest := strings.TrimPrefix(r.line, "error ")
		code, msg, _ := strings.Cut(rest, " ")
		c, cerr := strconv.Atoi(code)
		if cerr != nil {
			c = 1
		}
		return &ExitError{Code: c, Msg: msg}
	default:
		werr := child.Wait()
		return fmt.Errorf("the mount daemon exited before the mount was ready (%v); see %s", werr, logPath)
	}
}

// envWithout returns env without the variables names (a new slice).
func envWithout(env []string, names ...string) []string {
	out := env[:0:0]
outer:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}
