package similar

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/imgfs/imgfs/embed/index"
	"github.com/imgfs/imgfs/fs/core"
)

// fakeVault is an in-memory stand-in for core.FS (unit tests of this layer only; the
// integration test runs the real mount).
type fakeVault struct {
	mu    sync.Mutex
	next  core.Ino
	nodes map[core.Ino]*fnode
	aux   map[string]map[string][]byte
	opens atomic.Int64
}

type fnode struct {
	parent core.Ino
	name   string
	dir    bool
	data   []byte
}

func newFakeVault() *fakeVault {
	return &fakeVault{next: 2, nodes: map[core.Ino]*fnode{core.RootIno: {dir: true}}, aux: map[string]map[string][]byte{}}
}

func (f *fakeVault) resolveLocked(p string) (core.Ino, error) {
	ino := core.RootIno
	for _, c := range strings.Split(strings.Trim(p, "/"), "/") {
		if c == "" {
			continue
		}
		found := false
		for i, n := range f.nodes {
			if n.parent == ino && n.name == c && i != core.RootIno {
				ino, found = i, true
				break
			}
		}
		if !found {
			return 0, syscall.ENOENT
		}
	}
	return ino, nil
}

func (f *fakeVault) Resolve(p string) (core.Ino, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resolveLocked(p)
}

// write creates p (and its directories) with data, returning its inode.
func (f *fakeVault) write(p string, data []byte) core.Ino {
	f.mu.Lock()
	defer f.mu.Unlock()
	dir := core.RootIno
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for _, c := range parts[:len(parts)-1] {
		i, err := f.resolveLocked(path.Join(f.pathLocked(dir), c))
		if err != nil {
			i = f.next
			f.next++
			f.nodes[i] = &fnode{parent: dir, name: c, dir: true}
		}
		dir = i
	}
	if i, err := f.resolveLocked(p); err == nil {
		f.nodes[i].data = append([]byte(nil), data...)
		return i
	}
	i := f.next
	f.next++
	f.nodes[i] = &fnode{parent: dir, name: parts[len(parts)-1], data: append([]byte(nil), data...)}
	return i
}

func (f *fakeVault) rename(from, to string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.resolveLocked(from)
	if err != nil {
		panic(err)
	}
	d, err := f.resolveLocked(path.Dir(to))
	if err != nil {
		panic(err)
	}
	f.nodes[i].parent, f.nodes[i].name = d, path.Base(to)
}

func (f *fakeVault) unlink(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.resolveLocked(p)
	if err != nil {
		panic(err)
	}
	delete(f.nodes, i)
}

func (f *fakeVault) pathLocked(ino core.Ino) string {
	var parts []string
	for ino != core.RootIno {
		n := f.nodes[ino]
		parts = append([]string{n.name}, parts...)
		ino = n.parent
	}
	return "/" + strings.Join(parts, "/")
}

func (f *fakeVault) Path(ino core.Ino) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.nodes[ino]; !ok {
		return "", syscall.ENOENT
	}
	return f.pathLocked(ino), nil
}

func (f *fakeVault) attr(ino core.Ino, n *fnode) core.Attr {
	m := os.FileMode(0o644)
	if n.dir {
		m = os.ModeDir | 0o755
	}
	return core.Attr{Ino: ino, Mode: m, Size: int64(len(n.data)), Nlink: 1}
}

func (f *fakeVault) Lookup(parent core.Ino, name string) (core.Attr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, n := range f.nodes {
		if n.parent == parent && n.name == name && i != core.RootIno {
			return f.attr(i, n), nil
		}
	}
	return core.Attr{}, syscall.ENOENT
}

func (f *fakeVault) GetAttr(ino core.Ino) (core.Attr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[ino]
	if !ok {
		return core.Attr{}, syscall.ENOENT
	}
	return f.attr(ino, n), nil
}

func (f *fakeVault) ReadDir(ino core.Ino) ([]core.DirEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []core.DirEntry
	for i, n := range f.nodes {
		if n.parent == ino && i != core.RootIno {
			out = append(out, core.DirEntry{Name: n.name, Ino: i, Mode: f.attr(i, n).Mode})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

func (f *fakeVault) ContentID(ino core.Ino) ([32]byte, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[ino]
	if !ok {
		return [32]byte{}, false, syscall.ENOENT
	}
	if n.dir {
		return [32]byte{}, false, nil
	}
	return sha256.Sum256(n.data), true, nil
}

func (f *fakeVault) ForEachFile(fn func(core.Ino, [32]byte) error) error {
	f.mu.Lock()
	type e struct {
		ino core.Ino
		id  [32]byte
	}
	var es []e
	for i, n := range f.nodes {
		if !n.dir {
			es = append(es, e{i, sha256.Sum256(n.data)})
		}
	}
	f.mu.Unlock()
	for _, x := range es {
		if err := fn(x.ino, x.id); err != nil {
			return err
		}
	}
	return nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func (f *fakeVault) OpenReader(ino core.Ino) (ReaderAtCloser, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[ino]
	if !ok {
		return nil, 0, syscall.ENOENT
	}
	f.opens.Add(1)
	return nopCloser{bytes.NewReader(n.data)}, int64(len(n.data)), nil
}

func (f *fakeVault) table(t string) map[string][]byte {
	if f.aux[t] == nil {
		f.aux[t] = map[string][]byte{}
	}
	return f.aux[t]
}

func (f *fakeVault) PutAux(t string, k, v []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.table(t)[string(k)] = append([]byte(nil), v...)
	return nil
}

func (f *fakeVault) GetAux(t string, k []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.table(t)[string(k)]
	if !ok {
		return nil, syscall.ENOENT
	}
	return v, nil
}

func (f *fakeVault) DeleteAux(t string, k []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.table(t), string(k))
	return nil
}

func (f *fakeVault) ForEachAux(t string, fn func(k, v []byte) error) error {
	f.mu.Lock()
	var ks []string
	for k := range f.table(t) {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	vals := map[string][]byte{}
	for _, k := range ks {
		vals[k] = f.table(t)[k]
	}
	f.mu.Unlock()
	for _, k := range ks {
		if err := fn([]byte(k), vals[k]); err != nil {
			return err
		}
	}
	return nil
}

// fakeEmbedder "decodes" files made by fakeImage: a PNG signature then "group variant".
// Variants of one group have similarity ~0.93 to each other; groups ~0.5.
type fakeEmbedder struct {
	id    string
	calls atomic.Int64
}

const fakeDim = 64

func fakeImage(group, variant int) []byte {
	return []byte(fmt.Sprintf("\x89PNG\r\n\x1a\n%d %d", group, variant))
}

func (e *fakeEmbedder) ID() string { return e.id }
func (e *fakeEmbedder) Dim() int   { return fakeDim }
func (e *fakeEmbedder) EmbedReader(r io.Reader) ([]float32, error) {
	e.calls.Add(1)
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var g, v int
	if len(b) < 8 {
		return nil, fmt.Errorf("short")
	}
	if _, err := fmt.Sscanf(string(b[8:]), "%d %d", &g, &v); err != nil {
		return nil, fmt.Errorf("bad image: %v", err)
	}
	base := index.Synthetic(1, fakeDim, 1, 1, 0, uint64(g)+1000)[0]
	if v == 0 {
		return base, nil
	}
	// A deterministic perturbation per variant.
	p := index.Synthetic(1, fakeDim, 1, 0, 0, uint64(g*100+v))[0]
	out := make([]float32, fakeDim)
	var n float64
	for i := range out {
		out[i] = base[i] + 0.35*p[i]
		n += float64(out[i]) * float64(out[i])
	}
	for i := range out {
		out[i] /= float32(math.Sqrt(n))
	}
	return out, nil
}
