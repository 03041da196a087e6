package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7/pkg/signer"

	"github.com/imgfs/imgfs/backend/faulty"
	"github.com/imgfs/imgfs/backend/s3/s3test"
)

// A store that ignores create-only conditional writes (versitygw behind a proxy that strips
// them) is refused by init and by a writer mount with a clear message; read-only mounts and
// the same store without the proxy are fine.
func TestStoreProbeRefusesUnsafeStore(t *testing.T) {
	srv := s3test.StartServer(t)
	e := newEnv(t)
	vars := append(e.withPass("pw"), srv.Env()...)
	r := e.must(vars, "probe", "--store", srv.URL("vault"))
	if strings.Contains(r.stdout, "FAILED") || strings.Count(r.stdout, "ok ") != 4 {
		t.Fatalf("probe on versitygw: %q", r.stdout)
	}
	e.must(vars, "init", "--store", srv.URL("vault"))

	p, err := faulty.StartProxy(srv.Endpoint, faulty.ProxyConfig{StripConditions: true,
		Resign: func(r *http.Request) *http.Request {
			return signer.SignV4(*r, s3test.AccessKey, s3test.SecretKey, "", s3test.Region)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	bad := "s3:http://" + p.Addr + "/vault"
	r = e.run(vars, "probe", "--store", bad)
	if r.code == 0 || !strings.Contains(r.stdout, "FAILED") {
		t.Fatalf("probe through the stripping proxy: exit %d %q", r.code, r.stdout)
	}
	r = e.run(vars, "init", "--store", "s3:http://"+p.Addr+"/other")
	if r.code == 0 || !strings.Contains(r.stderr, "does not honour create-only conditional writes") {
		t.Fatalf("init on an unsafe store: exit %d %q", r.code, r.stderr)
	}
	oneErrorLine(t, r)
	mp := filepath.Join(e.dir, "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	r = e.run(vars, "mount", "-f", "--store", bad, "--cache", filepath.Join(e.dir, "c1"), mp)
	if r.code == 0 || !strings.Contains(r.stderr, "does not honour create-only conditional writes") {
		t.Fatalf("writer mount on an unsafe store: exit %d %q", r.code, r.stderr)
	}
}
