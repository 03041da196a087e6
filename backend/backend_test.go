package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestIsNetwork(t *testing.T) {
	// A real refused connection: listen, close, dial the same port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, refused := net.Dial("tcp", addr)
	if refused == nil {
		t.Skip("the closed port accepted a connection")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, cancelled := (&net.Dialer{}).DialContext(ctx, "tcp", addr)

	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"refused dial", refused, true},
		{"wrapped refused dial", fmt.Errorf("s3 put x: %w", refused), true},
		{"bare ECONNRESET", syscall.ECONNRESET, true},
		{"wrapped EPIPE", fmt.Errorf("upload: %w", syscall.EPIPE), true},
		{"ENETUNREACH in a PathError", &os.PathError{Op: "read", Path: "/nfs/x", Err: syscall.ENETUNREACH}, true},
		{"DNS", &net.DNSError{Err: "no such host", Name: "s3.invalid", IsNotFound: true}, true},
		{"closed connection", fmt.Errorf("read: %w", net.ErrClosed), true},
		{"transient without a network cause", Transient(errors.New("503 slow down")), false},
		{"ENOENT (a syscall.Errno is a net.Error too)", syscall.ENOENT, false},
		{"not exist", fmt.Errorf("get: %w", ErrNotExist), false},
		{"cancelled dial", cancelled, false},
		{"cancelled", context.Canceled, false},
		{"nil", nil, false},
	} {
		if got := IsNetwork(c.err); got != c.want {
			t.Errorf("%s (%v): IsNetwork = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
