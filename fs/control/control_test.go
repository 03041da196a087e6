package control

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newServer(t *testing.T) (*Server, string) {
	t.Helper()
	rt, err := os.MkdirTemp("", "imgfsctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	t.Setenv("IMGFS_RUNTIME_DIR", rt)
	mnt := t.TempDir()
	s, err := Listen(mnt, nil)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close(time.Second) })
	return s, mnt
}

func TestCallRoundTrip(t *testing.T) {
	s, mnt := newServer(t)
	s.Handle("echo", func(ctx context.Context, req json.RawMessage) (any, error) {
		var in struct{ N int }
		if err := json.Unmarshal(req, &in); err != nil {
			return nil, err
		}
		return map[string]int{"n": in.N * 2}, nil
	})
	s.Handle("fail", func(ctx context.Context, req json.RawMessage) (any, error) {
		return nil, errors.New("it broke")
	})
	var out struct{ N int }
	if err := Call(mnt, "echo", map[string]int{"N": 21}, &out); err != nil {
		t.Fatal(err)
	}
	if out.N != 42 {
		t.Fatalf("got %d, want 42", out.N)
	}
	// The same mountpoint spelled differently finds the same socket.
	if err := Call(mnt+"/.", "echo", map[string]int{"N": 1}, &out); err != nil || out.N != 2 {
		t.Fatalf("relative spelling: %v %d", err, out.N)
	}
	err := Call(mnt, "fail", nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "it broke" {
		t.Fatalf("fail: got %v", err)
	}
	err = Call(mnt, "nosuch", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "unknown control op") {
		t.Fatalf("unknown op: got %v", err)
	}
}

func TestNoDaemon(t *testing.T) {
	t.Setenv("IMGFS_RUNTIME_DIR", t.TempDir())
	err := Call(t.TempDir(), "status", nil, nil)
	if !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("got %v, want ErrNoDaemon", err)
	}
}

func TestSecondListenerRefusedStaleReplaced(t *testing.T) {
	s, mnt := newServer(t)
	if _, err := Listen(mnt, nil); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen: got %v, want ErrInUse", err)
	}
	s.Close(time.Second)
	// A stale socket file (daemon killed) is replaced.
	if err := os.WriteFile(SocketPath(mnt), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Listen(mnt, nil)
	if err != nil {
		t.Fatalf("Listen over stale socket: %v", err)
	}
	s2.Close(time.Second)
	if fi, err := os.Stat(filepath.Dir(SocketPath(mnt))); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("runtime dir mode: %v %v", fi.Mode(), err)
	}
}

func TestClientCancelCancelsHandler(t *testing.T) {
	s, mnt := newServer(t)
	cancelled := make(chan struct{})
	s.Handle("slow", func(ctx context.Context, req json.RawMessage) (any, error) {
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := CallContext(ctx, mnt, "slow", nil, nil); err == nil {
		t.Fatal("slow call returned no error after cancel")
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("handler context was not cancelled when the client left")
	}
}
