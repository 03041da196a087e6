// Package s3test starts a real S3 server for tests: versitygw v1.8.0 (installed by
// scripts/install-versitygw.sh) on 127.0.0.1 with its posix backend, so that every object
// is a plain file under DataDir/BUCKET/KEY that leak scanners can read.
//
//	url, env, dataDir := s3test.Start(t) // "s3:http://127.0.0.1:PORT/imgfs", AWS_* vars, DATA/imgfs
//	cmd.Env = append(os.Environ(), env...)
//	exec imgfs mount --store url ...
//
// A test that needs versitygw skips when it is missing, and fails instead when CI=true.
// The server is stopped in t.Cleanup, also when the test fails.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend/s3"
)

// Fixed test credentials (this server only ever listens on loopback).
const (
	AccessKey = "imgfstestaccess"
	SecretKey = "imgfs-test-secret-0123456789abcdef"
	Region    = "us-east-1"
	// Bucket is the bucket Start's URL names.
	Bucket = "imgfs"
)

// Binary returns the versitygw executable: $IMGFS_VERSITYGW, versitygw on PATH, or
// $(go env GOPATH)/bin/versitygw (default $HOME/go/bin), where scripts/install-versitygw.sh
// puts it.
func Binary() (string, error) {
	if p := os.Getenv("IMGFS_VERSITYGW"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var cands []string
	if gp := os.Getenv("GOPATH"); gp != "" {
		cands = append(cands, filepath.Join(strings.Split(gp, ":")[0], "bin", "versitygw"))
	}
	if h, err := os.UserHomeDir(); err == nil {
		cands = append(cands, filepath.Join(h, "go", "bin", "versitygw"))
	}
	for _, c := range cands {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", errors.New("versitygw not found (run: bash scripts/install-versitygw.sh)")
}

// Server is a running versitygw.
type Server struct {
	Endpoint string // 127.0.0.1:PORT
	DataDir  string // posix root: objects of bucket B are files under DataDir/B/
	Log      string // the server's stdout and stderr

	t    testing.TB
	bin  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a server and returns the URL of bucket Bucket on it (the bucket is created
// by the first store that opens it), the environment a child process needs to reach it
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), and the folder that holds the
// bucket's objects as plain files.
func Start(t testing.TB) (url string, env []string, dataDir string) {
	s := StartServer(t)
	return s.URL(Bucket), s.Env(), filepath.Join(s.DataDir, Bucket)
}

// Require skips the test (fails it when CI=true) if versitygw is not installed, and returns
// its path.
func Require(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %v", err)
		}
		t.Skip(err)
	}
	return bin
}

// StartServer starts a server on a free loopback port with a fresh data folder.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin := Require(t)
	s := &Server{t: t, bin: bin, DataDir: t.TempDir()}
	s.Log = filepath.Join(t.TempDir(), "versitygw.log")
	var err error
	for try := 0; try < 5; try++ {
		var port int
		port, err = freePort()
		if err != nil {
			break
		}
		s.Endpoint = fmt.Sprintf("127.0.0.1:%d", port)
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("starting versitygw: %v\n%s", err, s.logTail())
	}
	t.Cleanup(s.Stop)
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	logf, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "--port", s.Endpoint, "--quiet", "--keep-alive", "posix", s.DataDir)
	env := []string{"ROOT_ACCESS_KEY_ID=" + AccessKey, "ROOT_SECRET_ACCESS_KEY=" + SecretKey, "VGW_REGION=" + Region}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "VGW_") && !strings.HasPrefix(e, "ROOT_") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, and killed with the test binary if that dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-done:
			return fmt.Errorf("versitygw exited at start (port taken?)")
		default:
		}
		resp, err := client.Get("http://" + s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("versitygw not ready after 20s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

// Stop stops the server (SIGTERM, then SIGKILL after 5 s). Safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Restart starts a stopped server again on the same port and data folder (tests of a store
// that goes down and comes back).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for try := 0; try < 50; try++ { // the port may linger briefly
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restarting versitygw: %v\n%s", err, s.logTail())
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.Log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

// URL returns the store URL of bucket (with no key prefix).
func (s *Server) URL(bucket string) string { return "s3:http://" + s.Endpoint + "/" + bucket }

// Env returns the variables a process needs to reach the server.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey, "AWS_REGION=" + Region}
}

// Config returns an s3.Config for bucket on this server.
func (s *Server) Config(bucket string) s3.Config {
	return s3.Config{Endpoint: s.Endpoint, Bucket: bucket, Region: Region, AccessKey: AccessKey, SecretKey: SecretKey}
}

// Open opens bucket (created if missing) on this server; closed in t.Cleanup.
func (s *Server) Open(t testing.TB, bucket string) *s3.Store {
	t.Helper()
	st, err := s3.New(context.Background(), s.Config(bucket))
	if err != nil {
		t.Fatalf("opening bucket %s on versitygw: %v\n%s", bucket, err, s.logTail())
	}
	t.Cleanup(func() { st.Close() })
	return st
}
