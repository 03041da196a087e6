package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/retry"
	"github.com/imgfs/imgfs/backend/s3"
	"github.com/imgfs/imgfs/backend/s3/s3test"
	"github.com/imgfs/imgfs/backend/storetest"
	"github.com/imgfs/imgfs/backend/storeurl"
)

// The conformance suite runs on the store as imgfs uses it: wrapped in backend/retry. A
// server may answer a conditional PUT with 412 before reading the body and reset the
// connection while the client still writes it (versitygw does under load); the raw store
// reports that as a transient error and the retry then gets the 412 (ErrExist).
func TestConformance(t *testing.T) {
	srv := s3test.StartServer(t)
	var n atomic.Int32
	storetest.RunOptions(t, func(t *testing.T) backend.Store {
		return retry.New(srv.Open(t, fmt.Sprintf("conf-%02d", n.Add(1))), retry.Options{BaseDelay: 20 * time.Millisecond})
	}, storetest.Options{LargeSize: 16 << 20})
}

// The same suite through storeurl (URL parsing, env credentials, the retry wrapper) and
// with a key prefix inside the bucket.
func TestConformanceViaURL(t *testing.T) {
	srv := s3test.StartServer(t)
	for _, e := range srv.Env() {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	var n atomic.Int32
	storetest.RunOptions(t, func(t *testing.T) backend.Store {
		st, err := storeurl.Open(context.Background(), fmt.Sprintf("%s/vaults/v%02d", srv.URL("prefixed"), n.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}, storetest.Options{LargeSize: 4 << 20, Rounds: 2})
}

// recorder is the recording http.RoundTripper of the wire checks (docs/security-tests.md;
// minio Options.Transport).
type recorder struct {
	inner http.RoundTripper
	mu    sync.Mutex
	reqs  []recorded
}

type recorded struct {
	method, path string
	header       http.Header
	status       int
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.inner.RoundTrip(req)
	rec := recorded{method: req.Method, path: req.URL.Path, header: req.Header.Clone()}
	if resp != nil {
		rec.status = resp.StatusCode
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}

func openRecorded(t *testing.T, srv *s3test.Server, bucket string) (*s3.Store, *recorder) {
	t.Helper()
	rec := &recorder{inner: http.DefaultTransport.(*http.Transport).Clone()}
	cfg := srv.Config(bucket)
	cfg.Transport = rec
	st, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec.take() // bucket creation
	return st, rec
}

var keyPatterns = []*regexp.Regexp{
	regexp.MustCompile(`^/[a-z0-9-]+/(c|m)/[0-9a-f]{2}/[0-9a-f]{64}$`),
	regexp.MustCompile(`^/[a-z0-9-]+/r/[0-9]{20}$`),
	regexp.MustCompile(`^/[a-z0-9-]+/vault$`),
	regexp.MustCompile(`^/[a-z0-9-]+/k/[0-9a-f]{64}$`),
}

// TestHeadersT4 checks T4 (docs/security-tests.md) on the wire, the request count of a Put
// (target: at most one HEAD and one PUT; the store itself makes exactly one PUT), and that the
// stored file is the plain body (no aws-chunked framing).
func TestHeadersT4(t *testing.T) {
	srv := s3test.StartServer(t)
	st, rec := openRecorded(t, srv, "t4-headers")
	ctx := context.Background()
	type obj struct {
		name string
		data []byte
	}
	var objs []obj
	for i := 0; i < 5; i++ {
		data := storetest.RandBytes(1000 + 70_000*i)
		h := sha256.Sum256(data)
		x := hex.EncodeToString(h[:])
		objs = append(objs, obj{"c/" + x[:2] + "/" + x, data})
	}
	objs = append(objs, obj{"m/ab/" + strings.Repeat("ab", 32), []byte("meta")},
		obj{"r/00000000000000000007", []byte("root")}, obj{"vault", []byte("hdr")},
		obj{"k/" + strings.Repeat("0f", 32), []byte("slot")}, obj{"c/00/" + strings.Repeat("0", 64), nil})
	for _, o := range objs {
		if err := st.Put(ctx, o.name, bytes.NewReader(o.data), int64(len(o.data))); err != nil {
			t.Fatalf("Put %s: %v", o.name, err)
		}
		reqs := rec.take()
		if len(reqs) != 1 || reqs[0].method != http.MethodPut {
			t.Fatalf("Put %s made %d requests %v, want exactly 1 PUT", o.name, len(reqs), reqs)
		}
		checkPut(t, reqs[0], o.data, true)
		// The stored file is exactly the body.
		got, err := os.ReadFile(filepath.Join(srv.DataDir, "t4-headers", filepath.FromSlash(o.name)))
		if err != nil || !bytes.Equal(got, o.data) {
			t.Fatalf("file of %s on the server: %d bytes, err %v (want the plain %d-byte body)", o.name, len(got), err, len(o.data))
		}
		// HEAD with checksum mode returns the full-object SHA-256.
		info, sum, err := st.StatSHA256(ctx, o.name)
		want := sha256.Sum256(o.data)
		if err != nil || info.Size != int64(len(o.data)) {
			t.Fatalf("StatSHA256 %s: %+v %v", o.name, info, err)
		}
		if sum == nil {
			t.Logf("server returned no SHA-256 for %s", o.name)
		} else if !bytes.Equal(sum, want[:]) {
			t.Fatalf("StatSHA256 %s: checksum %x, want %x", o.name, sum, want)
		}
		reqs = rec.take()
		if len(reqs) != 1 || reqs[0].method != http.MethodHead || reqs[0].header.Get("X-Amz-Checksum-Mode") != "ENABLED" {
			t.Fatalf("Stat made %v, want one HEAD with checksum mode", reqs)
		}
	}
	// A dedup hit: one PUT answered 412, nothing else. (A small object: with a large one
	// the server may answer before the body is sent and reset the connection.)
	o := objs[5]
	err := st.Put(ctx, o.name, bytes.NewReader(o.data), int64(len(o.data)))
	if !errors.Is(err, backend.ErrExist) {
		t.Fatalf("second Put: %v", err)
	}
	reqs := rec.take()
	if len(reqs) != 1 || reqs[0].status != http.StatusPreconditionFailed {
		t.Fatalf("dedup-hit Put: %v, want one PUT answered 412", reqs)
	}
	// Get and ranged Get: one GET each.
	o = objs[1]
	if b, err := storetest.ReadAll(ctx, st, o.name, 5, 100); err != nil || !bytes.Equal(b, o.data[5:105]) {
		t.Fatalf("ranged Get: %v", err)
	}
	if reqs := rec.take(); len(reqs) != 1 || reqs[0].method != http.MethodGet || reqs[0].header.Get("Range") != "bytes=5-104" {
		t.Fatalf("ranged Get made %v", reqs)
	}
	// Overwrite (repair) is an unconditional PUT with the same hygiene.
	ow := storetest.RandBytes(500)
	if err := st.Overwrite(ctx, o.name, bytes.NewReader(ow), 500); err != nil {
		t.Fatal(err)
	}
	reqs = rec.take()
	if len(reqs) != 1 {
		t.Fatalf("Overwrite made %d requests", len(reqs))
	}
	checkPut(t, reqs[0], ow, false)
}

func checkPut(t *testing.T, r recorded, data []byte, createOnly bool) {
	t.Helper()
	h := r.header
	if ct := h.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("PUT %s: Content-Type %q", r.path, ct)
	}
	for k := range h {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-meta-") || lk == "x-amz-tagging" || lk == "content-disposition" ||
			lk == "content-encoding" || lk == "x-amz-website-redirect-location" {
			t.Errorf("PUT %s carries header %s: %q", r.path, k, h.Get(k))
		}
	}
	if got := h.Get("If-None-Match"); createOnly && got != "*" {
		t.Errorf("PUT %s: If-None-Match %q, want *", r.path, got)
	} else if !createOnly && got != "" {
		t.Errorf("Overwrite PUT %s: If-None-Match %q", r.path, got)
	}
	sum := sha256.Sum256(data)
	if got := h.Get("X-Amz-Checksum-Sha256"); got != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("PUT %s: x-amz-checksum-sha256 %q, want the body's", r.path, got)
	}
	if got := h.Get("X-Amz-Content-Sha256"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("PUT %s: x-amz-content-sha256 %q, want the signed body hash", r.path, got)
	}
	ok := false
	for _, p := range keyPatterns {
		ok = ok || p.MatchString(r.path)
	}
	if !ok {
		t.Errorf("PUT key %s matches none of the T4 patterns", r.path)
	}
}

// corrupter flips one byte of every PUT body on its way to the server.
type corrupter struct{ inner http.RoundTripper }

func (c corrupter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.Body != nil && req.ContentLength > 0 {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		b[len(b)/2] ^= 0x40
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	return c.inner.RoundTrip(req)
}

// The server recomputes the SHA-256 and refuses a body damaged in transit
// (docs/format.md §9 step 3; T38 "PUT acknowledged but body truncated", docs/security-tests.md).
func TestCorruptBodyRefused(t *testing.T) {
	srv := s3test.StartServer(t)
	cfg := srv.Config("corrupt")
	cfg.Transport = corrupter{http.DefaultTransport.(*http.Transport).Clone()}
	st, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	clean := srv.Open(t, "corrupt")
	name := storetest.Name("c", "corrupt")
	data := storetest.RandBytes(10_000)
	err = st.Put(context.Background(), name, bytes.NewReader(data), int64(len(data)))
	if err == nil {
		t.Fatal("a PUT with a damaged body was acknowledged")
	}
	t.Logf("damaged body: %v (transient=%v)", err, backend.IsTransient(err))
	if !backend.IsTransient(err) {
		t.Errorf("a body damaged in transit should be retryable: %v", err)
	}
	if _, err := clean.Stat(context.Background(), name); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("damaged body stored: Stat = %v", err)
	}
}

// TestRaceT19 is T19 (docs/security-tests.md) with convergent writers: 8 goroutines PUT the
// same bytes under the same name at once; exactly one PUT is answered 200, the others 412/409
// and reported as ErrExist (a dedup hit); the stored object hashes to its name.
func TestRaceT19(t *testing.T) {
	srv := s3test.StartServer(t)
	raw, rec := openRecorded(t, srv, "t19")
	st := retry.New(raw, retry.Options{BaseDelay: 20 * time.Millisecond})
	for round := 0; round < 10; round++ {
		data := storetest.RandBytes(512 << 10)
		sum := sha256.Sum256(data)
		x := hex.EncodeToString(sum[:])
		name := "c/" + x[:2] + "/" + x
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, 8)
		for i := range errs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				errs[i] = st.Put(context.Background(), name, bytes.NewReader(data), int64(len(data)))
			}(i)
		}
		close(start)
		wg.Wait()
		ok, exist := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, backend.ErrExist):
				exist++
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		codes := map[int]int{}
		for _, r := range rec.take() {
			if r.method == http.MethodPut {
				codes[r.status]++
			}
		}
		// codes[0]: a connection reset while sending a body the server had already refused;
		// the retry of that writer then got its 412.
		if ok != 1 || exist != 7 || codes[200] != 1 || codes[412]+codes[409] != 7 {
			t.Fatalf("round %d: %d stored, %d ErrExist, status codes %v", round, ok, exist, codes)
		}
		got, err := storetest.ReadAll(context.Background(), st, name, 0, -1)
		if err != nil || sha256.Sum256(got) != sum {
			t.Fatalf("round %d: stored object does not hash to its name (%v)", round, err)
		}
		rec.take()
	}
}

func TestErrorClasses(t *testing.T) {
	srv := s3test.StartServer(t)
	ctx := context.Background()
	// Wrong credentials: permanent.
	cfg := srv.Config("classes")
	cfg.SecretKey = "wrong-secret-key-000000000000"
	if _, err := s3.New(ctx, cfg); err == nil || !backend.IsPermanent(err) {
		t.Errorf("wrong secret: %v, want a permanent error", err)
	}
	// A missing bucket with creation off: permanent.
	cfg = srv.Config("nobucket")
	cfg.NoCreateBucket = true
	if _, err := s3.New(ctx, cfg); err == nil || !backend.IsPermanent(err) {
		t.Errorf("missing bucket: %v, want a permanent error", err)
	}
	st := srv.Open(t, "classes")
	name := storetest.Name("c", "cls")
	storetest.MustPut(t, st, name, []byte("x"))
	// Server down: transient, and quickly so.
	srv.Stop()
	for what, err := range map[string]error{
		"put":  st.Put(ctx, storetest.Name("c", "down"), bytes.NewReader([]byte("x")), 1),
		"stat": func() error { _, err := st.Stat(ctx, name); return err }(),
		"get":  func() error { _, err := st.Get(ctx, name, 0, -1); return err }(),
		"list": st.List(ctx, "", func(backend.Info) error { return nil }),
	} {
		if err == nil || !backend.IsTransient(err) {
			t.Errorf("%s with the server down: %v, want transient", what, err)
		}
	}
	// Back up: the retry decorator rides over a short outage.
	rs := retry.New(st, retry.Options{BaseDelay: 200 * time.Millisecond, MaxAttempts: 8})
	go func() {
		time.Sleep(300 * time.Millisecond)
		srv.Restart()
	}()
	if _, err := rs.Stat(ctx, name); err != nil {
		t.Fatalf("Stat across a restart: %v", err)
	}
}

func TestParseURL(t *testing.T) {
	good := map[string]s3.Config{
		"s3:http://127.0.0.1:7070/b":               {Endpoint: "127.0.0.1:7070", Bucket: "b"},
		"s3:https://s3.example.net/photos/x/y/":    {Endpoint: "s3.example.net", Secure: true, Bucket: "photos", Prefix: "x/y"},
		"s3:http://h:1/b/p?region=eu-central-1":    {Endpoint: "h:1", Bucket: "b", Prefix: "p", Region: "eu-central-1"},
		"s3:https://[::1]:9000/bucket-name/vault1": {Endpoint: "[::1]:9000", Secure: true, Bucket: "bucket-name", Prefix: "vault1"},
	}
	for u, want := range good {
		got, err := s3.ParseURL(u)
		if err != nil || got != want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", u, got, err, want)
		}
	}
	for _, u := range []string{"s3://bucket", "s3:ftp://h/b", "s3:http://h", "s3:http://h/", "s3:http://u:p@h/b",
		"s3:http://h/b?foo=1", "s3:http://h/b/../x", "http://h/b"} {
		if _, err := s3.ParseURL(u); err == nil {
			t.Errorf("ParseURL(%q) succeeded", u)
		}
	}
}

func TestNoCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	_, err := s3.Open(context.Background(), "s3:http://127.0.0.1:1/b")
	if err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("no credentials: %v", err)
	}
}

// Credentials from an AWS credentials file.
func TestCredentialsFile(t *testing.T) {
	srv := s3test.StartServer(t)
	f := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(f, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s3test.AccessKey, s3test.SecretKey)), 0o600)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", f)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	st, err := s3.Open(context.Background(), srv.URL("credfile"))
	if err != nil {
		t.Fatal(err)
	}
	storetest.MustPut(t, st, "vault", []byte("x"))
}
