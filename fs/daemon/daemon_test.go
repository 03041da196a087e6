package daemon

import (
	"os/exec"
	"testing"
	"time"
)

// TestWaitExit: a live process is waited for until the timeout; a killed one that nobody
// reaped yet (a zombie, as a daemon is until its starter's session reaps it) and a gone one
// end the wait before it.
func TestWaitExit(t *testing.T) {
	p := exec.Command("sleep", "60")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Process.Kill(); p.Wait() })
	pid := p.Process.Pid

	start := time.Now()
	WaitExit(pid, 200*time.Millisecond)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("WaitExit returned after %v while the process lives", d)
	}
	if err := p.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	const long = time.Minute
	start = time.Now()
	WaitExit(pid, long) // a zombie until p.Wait
	if d := time.Since(start); d >= long {
		t.Fatalf("WaitExit waited the whole %v for a zombie", d)
	}
	p.Wait()
	start = time.Now()
	WaitExit(pid, long)
	if d := time.Since(start); d >= long {
		t.Fatalf("WaitExit waited the whole %v for a process that is gone", d)
	}
}

func TestIsZombie(t *testing.T) {
	for stat, want := range map[string]bool{
		"123 (imgfs) Z 1 123": true,
		"123 (a) b) Z 1 123":  true,
		"123 (imgfs) S 1 123": false,
		"123 (x Z) S 1":       false,
		"":                    false,
		"123 (imgfs)":         false,
	} {
		if got := isZombie([]byte(stat)); got != want {
			t.Errorf("isZombie(%q) = %v, want %v", stat, got, want)
		}
	}
}
