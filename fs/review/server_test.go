package review

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/imgfs/imgfs/fs/similar"
)

func TestGroups(t *testing.T) {
	pairs := []similar.PairOut{
		{A: "a/1.jpg", B: "b/1.jpg", Score: 1, Tier: "identical"},
		{A: "a/2.jpg", B: "a/2e.jpg", Score: 0.94, Tier: "similar"},
		{A: "a/2e.jpg", B: "c/2.jpg", Score: 0.96, Tier: "same"},
		{A: "x/3.jpg", B: "y/3.jpg", Score: 0.95, Tier: "same"},
	}
	gs := Groups(pairs)
	var got []string
	for _, g := range gs {
		var ps []string
		for _, m := range g.Members {
			ps = append(ps, fmt.Sprintf("%s:%.2f:%s", m.Path, m.Score, m.Tier))
		}
		got = append(got, fmt.Sprintf("%.2f %s %s", g.Score, g.Tier, strings.Join(ps, ",")))
	}
	want := []string{
		"1.00 identical a/1.jpg:1.00:identical,b/1.jpg:1.00:identical",
		"0.96 same a/2.jpg:0.94:similar,a/2e.jpg:0.96:same,c/2.jpg:0.96:same",
		"0.95 same x/3.jpg:0.95:same,y/3.jpg:0.95:same",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Groups:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if f := Filter(gs, "same", ""); len(f) != 2 || f[0].Score != float32(0.96) {
		t.Fatalf("Filter same: %v", f)
	}
	if f := Filter(gs, "", "c/"); len(f) != 1 || len(f[0].Members) != 3 {
		t.Fatalf("Filter c/: %v", f)
	}
	if f := Filter(gs, "identical", "x"); len(f) != 0 {
		t.Fatalf("Filter identical x: %v", f)
	}
	if got := Tiers(gs); !reflect.DeepEqual(got, []string{"identical", "same"}) {
		t.Fatalf("Tiers = %v", got)
	}
	if got := Folders(gs); !reflect.DeepEqual(got, []string{"a", "b", "c", "x", "y"}) {
		t.Fatalf("Folders = %v", got)
	}
}

// fakeBackend is the daemon's side for unit tests of this package (the integration test in
// integration/review_test.go uses a real mount).
type fakeBackend struct {
	mu     sync.Mutex
	pairs  []similar.PairOut
	marked []similar.PairRef
}

func (f *fakeBackend) Pairs(context.Context) ([]similar.PairOut, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]similar.PairOut(nil), f.pairs...), 0, nil
}

func (f *fakeBackend) Mark(_ context.Context, ps []similar.PairRef) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.marked = append(f.marked, ps...)
	return len(ps), nil
}

func writeJPEG(t *testing.T, p string, w, h int) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 90, 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

type testServer struct {
	*Server
	base string
	dir  string
	be   *fakeBackend
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	dir := t.TempDir()
	writeJPEG(t, filepath.Join(dir, "a/big.jpg"), 800, 600)
	writeJPEG(t, filepath.Join(dir, "b/small.jpg"), 400, 300)
	be := &fakeBackend{pairs: []similar.PairOut{{A: "a/big.jpg", B: "b/small.jpg", Score: 0.97, Tier: "same"}}}
	s, err := New(Config{Mount: dir, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &testServer{s, strings.TrimSuffix(strings.SplitN(s.URL(), "?", 2)[0], "/"), dir, be}
}

// do sends a request; hdr holds extra headers ("Host" sets the Host).
func (ts *testServer) do(t *testing.T, method, path string, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestSecurity(t *testing.T) {
	ts := startServer(t)
	tok := "?token=" + ts.Token()
	port := strings.TrimPrefix(ts.base, "http://127.0.0.1")
	for _, c := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
	}{
		{"page with token", "GET", "/" + tok, "", nil, 200},
		{"page on localhost", "GET", "/" + tok, "", map[string]string{"Host": "localhost" + port}, 200},
		{"no token", "GET", "/", "", nil, 403},
		{"wrong token", "GET", "/?token=" + strings.Repeat("0", 48), "", nil, 403},
		{"api without token", "GET", "/api/groups", "", nil, 403},
		{"thumb without token", "GET", "/thumb?path=a/big.jpg", "", nil, 403},
		{"rebinding Host", "GET", "/" + tok, "", map[string]string{"Host": "attacker.example" + port}, 403},
		{"other port Host", "GET", "/" + tok, "", map[string]string{"Host": "127.0.0.1:1"}, 403},
		{"foreign Origin", "GET", "/api/groups" + tok, "", map[string]string{"Origin": "http://attacker.example"}, 403},
		{"null Origin", "GET", "/api/groups" + tok, "", map[string]string{"Origin": "null"}, 403},
		{"same Origin", "GET", "/api/groups" + tok, "", map[string]string{"Origin": ts.base}, 200},
		{"cross-site fetch", "GET", "/api/groups" + tok, "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site other port", "GET", "/api/groups" + tok, "", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"POST with URL token only", "POST", "/api/notdup" + tok, `{"pairs":[{"a":"a/big.jpg","b":"b/small.jpg"}]}`,
			map[string]string{"Content-Type": "application/json"}, 403},
		{"POST form type", "POST", "/api/notdup", `{"pairs":[{"a":"a/big.jpg","b":"b/small.jpg"}]}`,
			map[string]string{"X-Imgfs-Token": ts.Token(), "Content-Type": "text/plain"}, 400},
		{"POST foreign Origin", "POST", "/api/notdup", `{"pairs":[{"a":"a/big.jpg","b":"b/small.jpg"}]}`,
			map[string]string{"X-Imgfs-Token": ts.Token(), "Content-Type": "application/json", "Origin": "http://evil.example"}, 403},
		{"thumb escaping", "GET", "/thumb" + tok + "&path=../x", "", nil, 400},
		{"thumb of .similar", "GET", "/thumb" + tok + "&path=.similar/a", "", nil, 400},
	} {
		resp, body := ts.do(t, c.method, c.path, c.body, c.hdr)
		if resp.StatusCode != c.code {
			t.Errorf("%s: status %d, want %d (%s)", c.name, resp.StatusCode, c.code, strings.TrimSpace(body))
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: Cache-Control %q", c.name, cc)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self'") {
			t.Errorf("%s: CSP %q", c.name, csp)
		}
	}
	if len(ts.be.marked) != 0 {
		t.Fatalf("a refused request marked %v", ts.be.marked)
	}
	// The cookie set by the token URL authenticates later requests (what the page's fetches
	// and <img> use); no cookie, no access.
	resp, _ := ts.do(t, "GET", "/"+tok, "", nil)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		cookie = c
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Value != ts.Token() {
		t.Fatalf("cookie %+v", cookie)
	}
	if resp, _ := ts.do(t, "GET", "/api/groups", "", map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}); resp.StatusCode != 200 {
		t.Fatalf("cookie request: %d", resp.StatusCode)
	}
	if resp, _ := ts.do(t, "GET", "/api/groups", "", map[string]string{"Cookie": cookie.Name + "=x"}); resp.StatusCode != 403 {
		t.Fatalf("wrong cookie: %d", resp.StatusCode)
	}
}

func TestPageThumbDelete(t *testing.T) {
	ts := startServer(t)
	tok := "?token=" + ts.Token()
	_, body := ts.do(t, "GET", "/"+tok, "", nil)
	if !strings.Contains(body, `<meta name="imgfs-token" content="`+ts.Token()+`">`) || !strings.Contains(body, "/static/app.js") {
		t.Fatalf("page: %s", body)
	}
	for _, a := range []string{"/static/app.js", "/static/app.css"} {
		if resp, b := ts.do(t, "GET", a+tok, "", nil); resp.StatusCode != 200 || len(b) < 100 {
			t.Fatalf("%s: %d", a, resp.StatusCode)
		}
	}
	if resp, _ := ts.do(t, "GET", "/static/index.html"+tok, "", nil); resp.StatusCode != 404 {
		t.Fatalf("template served raw: %d", resp.StatusCode)
	}
	_, body = ts.do(t, "GET", "/api/groups"+tok, "", nil)
	var gp GroupsPage
	if err := json.Unmarshal([]byte(body), &gp); err != nil {
		t.Fatal(err, body)
	}
	if gp.Total != 1 || len(gp.Groups) != 1 || len(gp.Groups[0].Members) != 2 {
		t.Fatalf("groups: %s", body)
	}
	m := gp.Groups[0].Members
	if m[0].Path != "a/big.jpg" || m[0].Width != 800 || m[0].Height != 600 || m[0].Size == 0 || m[1].Width != 400 {
		t.Fatalf("members (largest first, with info): %+v", m)
	}
	resp, th := ts.do(t, "GET", "/thumb"+tok+"&path=a/big.jpg", "", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("thumb: %d %s", resp.StatusCode, th)
	}
	cfg, err := jpeg.DecodeConfig(strings.NewReader(th))
	if err != nil || cfg.Width != ThumbSize || cfg.Height != ThumbSize*3/4 {
		t.Fatalf("thumb is %dx%d (%v)", cfg.Width, cfg.Height, err)
	}
	post := func(path, body string) (int, string) {
		resp, b := ts.do(t, "POST", path, body, map[string]string{"X-Imgfs-Token": ts.Token(), "Content-Type": "application/json"})
		return resp.StatusCode, b
	}
	// Refusals lose nothing.
	for _, c := range []struct{ body string }{
		{`{"keep":"a/big.jpg","delete":[]}`},
		{`{"keep":"a/big.jpg","delete":["a/big.jpg"]}`},
		{`{"keep":"a/nosuch.jpg","delete":["b/small.jpg"]}`},
		{`{"keep":"a/big.jpg","delete":["../outside"]}`},
		{`{"keep":"a/big.jpg","delete":["b/small.jpg"],"extra":1}`},
	} {
		if code, b := post("/api/delete", c.body); code == 200 {
			t.Fatalf("%s accepted: %s", c.body, b)
		}
	}
	if _, err := os.Stat(filepath.Join(ts.dir, "b/small.jpg")); err != nil {
		t.Fatal(err)
	}
	code, b := post("/api/delete", `{"keep":"a/big.jpg","delete":["b/small.jpg"]}`)
	var dr struct{ Moved []Moved }
	json.Unmarshal([]byte(b), &dr)
	if code != 200 || len(dr.Moved) != 1 || !strings.HasPrefix(dr.Moved[0].To, similar.TrashDir+"/") || !strings.HasSuffix(dr.Moved[0].To, "/b/small.jpg") {
		t.Fatalf("delete: %d %s", code, b)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, "b/small.jpg")); !os.IsNotExist(err) {
		t.Fatalf("deleted file still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, dr.Moved[0].To)); err != nil {
		t.Fatalf("not in the trash: %v", err)
	}
	// A second file of the same name in the same second gets a free name.
	writeJPEG(t, filepath.Join(ts.dir, "b/small.jpg"), 40, 30)
	if code, b := post("/api/delete", `{"keep":"a/big.jpg","delete":["b/small.jpg"]}`); code != 200 || !strings.Contains(b, "small") {
		t.Fatalf("second delete: %d %s", code, b)
	}
	trashed, _ := filepath.Glob(filepath.Join(ts.dir, similar.TrashDir, "*", "b", "small*.jpg"))
	if len(trashed) != 2 {
		t.Fatalf("trash holds %v, want both copies", trashed)
	}
	if code, b := post("/api/notdup", `{"pairs":[{"a":"a/big.jpg","b":"b/x.jpg"}]}`); code != 200 || len(ts.be.marked) != 1 {
		t.Fatalf("notdup: %d %s", code, b)
	}
	if code, _ := post("/api/notdup", `{"pairs":[{"a":"a/big.jpg","b":"/etc/passwd"}]}`); code != 400 {
		t.Fatalf("notdup with an absolute path: %d", code)
	}
}
