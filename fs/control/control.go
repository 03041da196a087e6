// Package control is the per-mount control socket: a unix socket served by the mount
// daemon, through which `imgfs status`, `imgfs sync`, `imgfs umount` (and other features'
// commands, e.g. `imgfs similar`) talk to a running mount.
//
// Socket location (deterministic from the mountpoint, so any client finds it):
//
//	<dir>/<first 16 hex digits of SHA-256(absolute, symlink-resolved mountpoint)>.sock
//
// where <dir> is $IMGFS_RUNTIME_DIR if set, else $XDG_RUNTIME_DIR/imgfs if XDG_RUNTIME_DIR
// is set, else /tmp/imgfs-<uid>. The directory is created with mode 0700 and must be owned
// by the caller.
//
// Protocol: one request per connection. The client writes one JSON object
// {"op": "...", "req": <any JSON>} followed by a newline; the server answers one JSON object
// {"result": <any JSON>} or {"error": "one line"} and closes the connection. A client that
// closes its side cancels the handler's context.
package control

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// HandlerFunc serves one op. req is the request's raw JSON ("null" when absent); the result
// is marshalled as JSON. ctx is cancelled when the client goes away or the server closes.
type HandlerFunc func(ctx context.Context, req json.RawMessage) (any, error)

// RuntimeDir is the directory that holds control sockets.
func RuntimeDir() string {
	if d := os.Getenv("IMGFS_RUNTIME_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "imgfs")
	}
	return filepath.Join(os.TempDir(), "imgfs-"+strconv.Itoa(os.Getuid()))
}

// CanonicalMountpoint returns the absolute, symlink-resolved form of mountpoint (the key of
// its socket). A path that cannot be resolved (e.g. a dead mount) is cleaned only.
func CanonicalMountpoint(mountpoint string) string {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		abs = filepath.Clean(mountpoint)
	}
	// Resolve symlinks of the parent only: stat of a dead FUSE mount itself fails.
	parent, base := filepath.Split(abs)
	if rp, err := filepath.EvalSymlinks(parent); err == nil {
		abs = filepath.Join(rp, base)
	}
	return abs
}

// SocketPath returns the control socket path of the mount at mountpoint.
func SocketPath(mountpoint string) string {
	sum := sha256.Sum256([]byte(CanonicalMountpoint(mountpoint)))
	return filepath.Join(RuntimeDir(), hex.EncodeToString(sum[:])[:16]+".sock")
}

type request struct {
	Op  string          `json:"op"`
	Req json.RawMessage `json:"req,omitempty"`
}

type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Server serves a control socket.
type Server struct {
	path string
	ln   net.Listener
	log  *slog.Logger

	mu       sync.Mutex
	handlers map[string]HandlerFunc

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ErrInUse means another live daemon serves this mountpoint's socket.
var ErrInUse = errors.New("control socket in use by another imgfs daemon")

// Listen creates the socket for mountpoint. A stale socket (no daemon answers) is replaced;
// a live one gives ErrInUse.
func Listen(mountpoint string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	path := SocketPath(mountpoint)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket dir: %w", err)
	}
	if fi, err := os.Stat(dir); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
			return nil, fmt.Errorf("control socket dir %s is not owned by uid %d", dir, os.Getuid())
		}
	}
	if _, err := os.Lstat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrInUse, path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(path, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{path: path, ln: ln, log: log, handlers: map[string]HandlerFunc{}, ctx: ctx, cancel: cancel}, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Handle registers fn for op, replacing an earlier one.
func (s *Server) Handle(op string, fn HandlerFunc) {
	s.mu.Lock()
	s.handlers[op] = fn
	s.mu.Unlock()
}

// Ops lists the registered ops.
func (s *Server) Ops() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops := make([]string, 0, len(s.handlers))
	for op := range s.handlers {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}

// Serve accepts connections until Close. Run it in a goroutine.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(io.LimitReader(c, 16<<20))
	line, err := br.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return
	}
	c.SetReadDeadline(time.Time{})
	var req request
	var resp response
	if err := json.Unmarshal(line, &req); err != nil {
		resp.Error = "bad control request: " + err.Error()
		writeResp(c, resp)
		return
	}
	s.mu.Lock()
	fn := s.handlers[req.Op]
	s.mu.Unlock()
	if fn == nil {
		resp.Error = fmt.Sprintf("unknown control op %q (this daemon serves: %v)", req.Op, s.Ops())
		writeResp(c, resp)
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// The client closing its side (EOF or error) cancels the handler.
	go func() {
		var b [1]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				cancel()
				return
			}
		}
	}()
	raw := req.Req
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	res, err := fn(ctx, raw)
	if err != nil {
		resp.Error = err.Error()
	} else {
		b, merr := json.Marshal(res)
		if merr != nil {
			resp.Error = "encode result: " + merr.Error()
		} else {
			resp.Result = b
		}
	}
	writeResp(c, resp)
}

func writeResp(c net.Conn, r response) {
	b, _ := json.Marshal(r)
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	c.Write(append(b, '\n'))
}

// Close stops accepting, removes the socket, cancels running handlers and waits up to
// timeout for them to answer.
func (s *Server) Close(timeout time.Duration) error {
	s.cancel()
	err := s.ln.Close()
	os.Remove(s.path)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
	return err
}

// StopAccepting removes the socket so new clients see no daemon, but lets running handlers
// finish (e.g. the umount that triggered the shutdown still gets its answer).
func (s *Server) StopAccepting() {
	s.ln.Close()
	os.Remove(s.path)
}

// Wait waits up to timeout for running handlers.
func (s *Server) Wait(timeout time.Duration) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

// ErrNoDaemon means nothing answers on the mountpoint's control socket.
var ErrNoDaemon = errors.New("no imgfs daemon serves this mountpoint")

// RemoteError is an error returned by the daemon's handler.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// Call sends op with req (any JSON-marshallable value, or nil) to the daemon serving
// mountpoint and decodes the result into resp (may be nil). It waits as long as the op runs.
func Call(mountpoint, op string, req, resp any) error {
	return CallContext(context.Background(), mountpoint, op, req, resp)
}

// CallContext is Call with a context; cancelling it cancels the op on the daemon.
func CallContext(ctx context.Context, mountpoint, op string, req, resp any) error {
	path := SocketPath(mountpoint)
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := d.DialContext(dctx, "unix", path)
	cancel()
	if err != nil {
		return fmt.Errorf("%w at %s (socket %s): %v", ErrNoDaemon, CanonicalMountpoint(mountpoint), path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	r := request{Op: op}
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return err
		}
		r.Req = b
	}
	b, _ := json.Marshal(r)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("control %s: %w", op, err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil && len(line) == 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("control %s: daemon closed the connection: %w", op, err)
	}
	var rs response
	if err := json.Unmarshal(line, &rs); err != nil {
		return fmt.Errorf("control %s: bad answer: %w", op, err)
	}
	if rs.Error != "" {
		return &RemoteError{Msg: rs.Error}
	}
	if resp != nil && len(rs.Result) > 0 {
		return json.Unmarshal(rs.Result, resp)
	}
	return nil
}
