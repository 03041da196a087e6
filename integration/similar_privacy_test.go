package integration

// T6 and T9 (docs/security-tests.md) end to end, with the vault on a real S3 server
// (versitygw) behind a recording proxy: the embeddings the daemon computed reach the store
// only encrypted, and .similar/ queries issue the same store requests whatever file they ask
// about.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgfs/imgfs/backend/faulty"
	"github.com/imgfs/imgfs/backend/s3/s3test"
	"github.com/imgfs/imgfs/dedup/leakscan"
	"golang.org/x/sys/unix"
)

func TestSimilarPrivacy(t *testing.T) {
	model := similarModel(t)
	need(t, convertBin)
	srv := s3test.StartServer(t)
	proxy, url := qaProxy(t, srv, faulty.ProxyConfig{})
	m := startVault(t, vaultOptions{Store: url, Env: append(srv.Env(), "IMGFS_MODEL="+model)})
	storeDir := filepath.Join(srv.DataDir, s3test.Bucket)

	src := t.TempDir()
	var files []string
	add := func(name string, args ...string) {
		convert(t, append(args, filepath.Join(src, name))...)
		files = append(files, name)
	}
	for name, args := range similarOriginals {
		add(name, args...)
		stem := strings.TrimSuffix(name, filepath.Ext(name))
		for _, v := range similarVariants[:2] { // resize, recompress
			add(fmt.Sprintf("%s-%s.%s", stem, v.name, v.ext), append([]string{filepath.Join(src, name)}, v.ops...)...)
		}
	}
	for name, args := range similarDistractors {
		add(name, args...)
	}
	sh(t, "", fmt.Sprintf("cp -r %s %s/photos", src, m.Dir))
	m.Sync() // sealed, embedded, and the index's aux tables committed to the store

	// The vectors, as `imgfs embed` computes them from the same files.
	var args []string
	for _, f := range files {
		args = append(args, filepath.Join(src, f))
	}
	vecs := map[string][]float32{}
	for _, line := range strings.Split(strings.TrimSpace(m.Imgfs(t, append([]string{"embed", "--json"}, args...)...)), "\n") {
		var r struct {
			File   string    `json:"file"`
			Vector []float32 `json:"vector"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil || len(r.Vector) == 0 {
			t.Fatalf("imgfs embed --json line %q: %v", line, err)
		}
		vecs[filepath.Base(r.File)] = r.Vector
	}
	if len(vecs) != len(files) {
		t.Fatalf("imgfs embed gave %d vectors for %d files", len(vecs), len(files))
	}
	// They are the daemon's: its scores (int8 dot products, within about 0.01 of exact)
	// match the dot products of these vectors.
	matches := similarJSON(t, m, filepath.Join(m.Dir, "photos", "wizard.jpg"))
	if len(matches) == 0 {
		t.Fatal("imgfs similar found no match of wizard.jpg")
	}
	for _, mt := range matches {
		w, ok := vecs[filepath.Base(mt.Path)]
		if !ok {
			t.Fatalf("imgfs similar matched %s, which was not embedded", mt.Path)
		}
		if d := dot(vecs["wizard.jpg"], w); math.Abs(d-mt.Score) > 0.02 {
			t.Fatalf("daemon score %.4f for %s, dot product of the CLI's vectors %.4f: not the same vectors", mt.Score, mt.Path, d)
		}
	}

	// T6: no 16-byte window of any vector's float32 or float16 serialisation and no two
	// adjacent float32 components anywhere in the store (bodies and keys) or in the cache
	// directory. Single 4-byte components turn up by chance in random bytes (about
	// bytes*components/2^32), so only pairs count; a leaked vector gives hundreds.
	s := leakscan.New()
	components := map[[4]byte]bool{}
	var control []byte
	for _, v := range vecs {
		for _, x := range v {
			if x != 0 {
				components[[4]byte(binary.LittleEndian.AppendUint32(nil, math.Float32bits(x)))] = true
			}
		}
		f32, f16 := leakscan.VectorForms(v)
		s.AddPlaintext("embedding float32", f32)
		s.AddPlaintext("embedding float16", f16)
		control = f32
	}
	pairs := func(b []byte) (n int) {
		for i := 0; i+8 <= len(b); i++ {
			if components[[4]byte(b[i:i+4])] && components[[4]byte(b[i+4:i+8])] {
				n++
			}
		}
		return n
	}
	if len(s.ScanBytes("control", control)) == 0 || pairs(control) < len(control)/4-1 {
		t.Fatal("positive control: the scan does not find a vector stored in clear")
	}
	scanned := 0
	for _, dir := range []string{storeDir, m.Cache} {
		hits, err := s.ScanDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) > 0 {
			t.Fatalf("embedding bytes in %s:\n%s", dir, leakscan.Format(hits))
		}
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			scanned += len(b)
			if n := pairs(b); n > 0 {
				t.Errorf("%s: %d adjacent pairs of embedding components", p, n)
			}
			return nil
		})
	}
	t.Logf("T6: %d vectors, %d distinct components, %d bytes of store and cache scanned", len(vecs), len(components), scanned)

	// T9: with a warm cache, listing .similar/ for one file or another issues the same
	// multiset of store requests (none expected: the index lives in the local cache).
	query := func(name string) {
		sh(t, m.Dir, "ls -l .similar/photos/"+name+" >/dev/null")
		if _, err := unix.Getxattr(filepath.Join(m.Dir, ".similar/photos", name), "user.imgfs.similarity", make([]byte, 1<<16)); err != nil {
			t.Fatalf("getxattr .similar/photos/%s: %v", name, err)
		}
	}
	query("wizard.jpg") // warm both
	query("shapes.jpg")
	record := func(name string) []string {
		proxy.ResetRequests()
		query(name)
		r := proxy.Requests()
		slices.Sort(r)
		return r
	}
	a, b := record("wizard.jpg"), record("shapes.jpg")
	if !slices.Equal(a, b) {
		t.Fatalf("T9: .similar/ queries are told apart by their store requests:\nwizard.jpg: %q\nshapes.jpg: %q", a, b)
	}
	// Positive control: the recorder sees requests that do reach the store.
	proxy.ResetRequests()
	m.Imgfs(t, "ls", "--store", url)
	if len(proxy.Requests()) == 0 {
		t.Fatal("positive control: imgfs ls --store made no request the proxy saw")
	}
	t.Logf("T9: %d store requests per .similar/ query", len(a))
}

func dot(a, b []float32) float64 {
	s := 0.0
	for i := range min(len(a), len(b)) {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}
