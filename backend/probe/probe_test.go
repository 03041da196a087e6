package probe

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7/pkg/signer"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/faulty"
	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/backend/s3"
	"github.com/imgfs/imgfs/backend/s3/s3test"
)

func run(t *testing.T, st backend.Store) *Result {
	t.Helper()
	r, err := Run(context.Background(), st, 8)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Checks {
		t.Logf("%s: ok=%v skipped=%v %s", c.Name, c.OK, c.Skipped, c.Detail)
	}
	var left []string
	st.List(context.Background(), Prefix, func(i backend.Info) error { left = append(left, i.Name); return nil })
	if len(left) != 0 {
		t.Errorf("probe objects left: %q", left)
	}
	return r
}

func TestLocalStorePasses(t *testing.T) {
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, st)
	if !r.OK() || len(r.Checks) != 4 || !r.Checks[2].Skipped {
		t.Fatalf("local store: %+v", r.Checks)
	}
}

// overwriting is a store whose Put ignores create-only (a negative control without S3).
type overwriting struct{ *local.Store }

func (o overwriting) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	return o.Store.Overwrite(ctx, name, r, size)
}

func TestOverwritingStoreFails(t *testing.T) {
	st, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, overwriting{st})
	if r.OK() || r.Checks[1].OK || r.Checks[3].OK {
		t.Fatalf("a store that overwrites passed: %+v", r.Checks)
	}
	if !strings.Contains(r.Failed(), "ignores If-None-Match") {
		t.Fatalf("summary %q", r.Failed())
	}
}

func TestVersitygwPasses(t *testing.T) {
	srv := s3test.StartServer(t)
	r := run(t, srv.Open(t, "probe"))
	if !r.OK() {
		t.Fatalf("versitygw: %s", r.Failed())
	}
}

// The same server behind a proxy that strips the conditions (and signs the request again):
// every conditional check fails.
func TestStrippingProxyFails(t *testing.T) {
	srv := s3test.StartServer(t)
	srv.Open(t, "probe") // creates the bucket
	p, err := faulty.StartProxy(srv.Endpoint, faulty.ProxyConfig{StripConditions: true,
		Resign: func(r *http.Request) *http.Request {
			return signer.SignV4(*r, s3test.AccessKey, s3test.SecretKey, "", s3test.Region)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := srv.Config("probe")
	cfg.Endpoint = p.Addr
	st, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := run(t, st)
	if r.OK() {
		t.Fatal("the probe passed through a proxy that strips If-None-Match/If-Match")
	}
	for _, i := range []int{1, 2, 3} {
		if r.Checks[i].OK {
			t.Errorf("check %q passed without conditions", r.Checks[i].Name)
		}
	}
}
