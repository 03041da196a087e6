package rootsync

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/faulty"
	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/dedup"
)

// A fake working copy over a real local store: its namespace is a map name -> content,
// a root object is "seq | prev | writer | name=content;..." (no encryption: the protocol
// does not look inside roots beyond Header). Merge keeps ours for a name both changed.

type fakeWC struct {
	t      *testing.T
	s      *Syncer
	mu     sync.Mutex
	anchor Anchor
	files  map[string]string // working copy
	base   map[string]string // the anchor root's files
	dirty  bool
	refs   []string // Candidate.Refs of the next build
	gen    int      // makes each build's object distinct (like a root's time)

	merges, rebuilds, adopts []uint64
	restored                 []string
	restoreErr               error
	doneErr                  error // returned once by the next Candidate.Done
	// beforePublish runs after Build, before the Put (a race window).
	beforePublish func()
}

func encodeFake(seq uint64, prev dedup.Locator, writer []byte, files map[string]string, gen int) []byte {
	b := binary.BigEndian.AppendUint64(nil, seq)
	b = append(b, prev[:]...)
	b = append(b, byte(len(writer)))
	b = append(b, writer...)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var body []string
	for _, n := range names {
		body = append(body, n+"="+files[n])
	}
	return append(b, fmt.Sprintf("%d|%s", gen, strings.Join(body, ";"))...)
}

func decodeFake(seq uint64, obj []byte) (Header, map[string]string, error) {
	if len(obj) < 41 || binary.BigEndian.Uint64(obj) != seq {
		return Header{}, nil, errors.New("not a fake root")
	}
	var h Header
	copy(h.Prev[:], obj[8:40])
	wl := int(obj[40])
	if len(obj) < 41+wl {
		return Header{}, nil, errors.New("not a fake root")
	}
	if wl > 0 {
		h.Writer = obj[41 : 41+wl]
	}
	_, body, _ := strings.Cut(string(obj[41+wl:]), "|")
	files := map[string]string{}
	if body != "" {
		for _, kv := range strings.Split(body, ";") {
			k, v, _ := strings.Cut(kv, "=")
			files[k] = v
		}
	}
	return h, files, nil
}

func openFake(seq uint64, obj []byte) (Header, error) {
	h, _, err := decodeFake(seq, obj)
	return h, err
}

func newFake(t *testing.T, store backend.Store, writer string) *fakeWC {
	w := &fakeWC{t: t, files: map[string]string{}, base: map[string]string{}}
	var id []byte
	if writer != "" {
		id = []byte(writer)
	}
	w.s = NewSyncer(store, id, openFake, nil)
	return w
}

func (w *fakeWC) write(name, content string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.files[name] = content
	w.dirty = true
}

func (w *fakeWC) snapshot() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.files)
}

func (w *fakeWC) Anchor() Anchor {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.anchor
}

func (w *fakeWC) Build(ctx context.Context, a Anchor) (*Candidate, error) {
	w.mu.Lock()
	if !w.dirty && a.Seq > 0 {
		w.mu.Unlock()
		return nil, nil
	}
	w.gen++
	obj := encodeFake(a.Seq+1, a.Hash, w.s.writer, w.files, w.gen)
	files := maps.Clone(w.files)
	refs := w.refs
	hook := w.beforePublish
	w.beforePublish = nil
	w.mu.Unlock()
	if hook != nil {
		hook()
	}
	return &Candidate{Obj: obj, Refs: refs, Done: func(stored Anchor) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if err := w.doneErr; err != nil {
			w.doneErr = nil
			return err
		}
		w.anchor, w.base, w.dirty = stored, files, !maps.Equal(files, w.files)
		return nil
	}}, nil
}

func (w *fakeWC) load(ctx context.Context, seq uint64) (Anchor, map[string]string) {
	obj, h, err := w.s.Read(ctx, seq)
	if err != nil {
		w.t.Fatalf("reading root %d: %v", seq, err)
	}
	_, files, err := decodeFake(seq, obj)
	if err != nil {
		w.t.Fatal(err)
	}
	return Anchor{Seq: seq, Hash: h}, files
}

func (w *fakeWC) Merge(ctx context.Context, seq uint64) error {
	a, theirs := w.load(ctx, seq)
	w.mu.Lock()
	defer w.mu.Unlock()
	merged := maps.Clone(theirs)
	for n, v := range w.files { // ours wins where ours changed
		if b, ok := w.base[n]; !ok || b != v {
			merged[n] = v
		}
	}
	for n := range w.base { // deleted on ours
		if _, ok := w.files[n]; !ok && theirs[n] == w.base[n] {
			delete(merged, n)
		}
	}
	w.files, w.base, w.anchor = merged, theirs, a
	w.dirty = !maps.Equal(merged, theirs)
	w.merges = append(w.merges, seq)
	return nil
}

func (w *fakeWC) Rebuild(ctx context.Context, seq uint64) error {
	a, files := w.load(ctx, seq)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.files, w.base, w.anchor, w.dirty = files, maps.Clone(files), a, false
	w.rebuilds = append(w.rebuilds, seq)
	return nil
}

func (w *fakeWC) Adopt(a Anchor) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.anchor = a
	w.adopts = append(w.adopts, a.Seq)
	return nil
}

func (w *fakeWC) Restore(ctx context.Context, name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.restored = append(w.restored, name)
	if w.restoreErr != nil {
		if errors.Is(w.restoreErr, ErrLeftOut) {
			w.refs = slices.DeleteFunc(slices.Clone(w.refs), func(r string) bool { return r == name })
		}
		return w.restoreErr
	}
	return w.s.store.Put(ctx, name, strings.NewReader("restored"), 8)
}

func newStore(t *testing.T) backend.Store {
	s, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctxT(t *testing.T) context.Context { return t.Context() }

// newestFiles reads the newest root's files and checks the whole chain from r/1.
func newestFiles(t *testing.T, store backend.Store) (uint64, map[string]string) {
	t.Helper()
	w := newFake(t, store, "")
	newest, err := w.s.Fetch(ctxT(t), Anchor{})
	if err != nil {
		t.Fatalf("chain: %v", err)
	}
	_, files := w.load(ctxT(t), newest)
	return newest, files
}

func okT(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Two writers race for the same sequence number: exactly one create-only Put wins, the
// other merges the winner's root and commits on top; nothing of either is lost.
func TestTwoWritersRaceOneNumber(t *testing.T) {
	for round := 0; round < 20; round++ {
		store := newStore(t)
		a, b := newFake(t, store, "dev-a"), newFake(t, store, "dev-b")
		a.write("shared", "0")
		okT(t, a.s.Commit(ctxT(t), a))
		okT(t, b.s.Start(ctxT(t), b, true))
		a.write("a.jpg", "A")
		b.write("b.jpg", "B")
		// Both build on anchor 1 before either publishes.
		var built sync.WaitGroup
		built.Add(2)
		release := make(chan struct{})
		for _, w := range []*fakeWC{a, b} {
			w.beforePublish = func() {
				built.Done()
				<-release
			}
		}
		errs := make(chan error, 2)
		for _, w := range []*fakeWC{a, b} {
			go func() { errs <- w.s.Commit(ctxT(t), w) }()
		}
		built.Wait()
		close(release)
		okT(t, <-errs)
		okT(t, <-errs)
		if len(a.merges)+len(b.merges) != 1 {
			t.Fatalf("merges: a %v, b %v; want exactly one device to merge", a.merges, b.merges)
		}
		newest, files := newestFiles(t, store)
		if newest != 3 {
			t.Fatalf("newest root %d, want 3 (1, the winner's 2, the loser's 3 on top)", newest)
		}
		want := map[string]string{"shared": "0", "a.jpg": "A", "b.jpg": "B"}
		if !maps.Equal(files, want) {
			t.Fatalf("newest root holds %v, want %v", files, want)
		}
	}
}

// A device that is several roots behind fetches them one name at a time (checking each
// link) and merges only the newest.
func TestFetchSeveralNewerRoots(t *testing.T) {
	store := newStore(t)
	a, b := newFake(t, store, "dev-a"), newFake(t, store, "dev-b")
	a.write("x", "1")
	okT(t, a.s.Commit(ctxT(t), a))
	okT(t, b.s.Start(ctxT(t), b, true))
	for i := 2; i <= 4; i++ {
		a.write(fmt.Sprintf("f%d", i), "v")
		okT(t, a.s.Commit(ctxT(t), a))
	}
	newest, err := b.s.Fetch(ctxT(t), b.Anchor())
	okT(t, err)
	if newest != 4 {
		t.Fatalf("Fetch: newest %d, want 4", newest)
	}
	b.write("mine", "m")
	okT(t, b.s.Refresh(ctxT(t), b, false))
	if fmt.Sprint(b.merges) != "[4]" || b.Anchor().Seq != 4 {
		t.Fatalf("merges %v, anchor %d; want one merge of root 4", b.merges, b.Anchor().Seq)
	}
	okT(t, b.s.Commit(ctxT(t), b))
	_, files := newestFiles(t, store)
	if len(files) != 5 || files["mine"] != "m" || files["f4"] != "v" {
		t.Fatalf("newest root: %v", files)
	}
	// Nothing newer: Refresh is one Stat and merges nothing.
	okT(t, b.s.Refresh(ctxT(t), b, false))
	if len(b.merges) != 1 {
		t.Fatalf("merges %v after an idle refresh", b.merges)
	}
}

// Rollback: a root that does not chain to the one before, a store older than the anchor,
// and a fork at the anchor are refused.
func TestRollbackRefused(t *testing.T) {
	store := newStore(t)
	a, b := newFake(t, store, "dev-a"), newFake(t, store, "dev-b")
	for i := 1; i <= 3; i++ {
		a.write("f", fmt.Sprint(i))
		okT(t, a.s.Commit(ctxT(t), a))
	}
	okT(t, b.s.Start(ctxT(t), b, true))
	if b.Anchor().Seq != 3 || fmt.Sprint(b.rebuilds) != "[3]" {
		t.Fatalf("b: anchor %d rebuilds %v", b.Anchor().Seq, b.rebuilds)
	}
	// A replaced root 4 that names a wrong predecessor.
	bad := encodeFake(4, dedup.Locator{9}, []byte("evil"), map[string]string{"f": "evil"}, 0)
	okT(t, store.Put(ctxT(t), dedup.RootName(4), bytes.NewReader(bad), int64(len(bad))))
	if _, err := b.s.Fetch(ctxT(t), b.Anchor()); !errors.Is(err, ErrRollback) {
		t.Fatalf("Fetch of a root that does not chain: %v, want ErrRollback", err)
	}
	if err := b.s.Refresh(ctxT(t), b, false); !errors.Is(err, ErrRollback) {
		t.Fatalf("Refresh: %v, want ErrRollback", err)
	}
	b.write("g", "1")
	if err := b.s.Commit(ctxT(t), b); !errors.Is(err, ErrRollback) {
		t.Fatalf("Commit onto a root that does not chain: %v, want ErrRollback", err)
	}
	if len(b.merges) != 0 {
		t.Fatalf("merged %v from a broken chain", b.merges)
	}
	okT(t, store.Delete(ctxT(t), dedup.RootName(4)))
	// The store loses its newest root: older than what b saw.
	okT(t, store.Delete(ctxT(t), dedup.RootName(3)))
	if err := b.s.Start(ctxT(t), b, false); !errors.Is(err, ErrRollback) {
		t.Fatalf("Start with the store behind the anchor: %v, want ErrRollback", err)
	}
	// A fork: another root 3 than the one b saw.
	fork := encodeFake(3, a.load2(t, 2), []byte("dev-a"), map[string]string{"f": "fork"}, 0)
	okT(t, store.Put(ctxT(t), dedup.RootName(3), bytes.NewReader(fork), int64(len(fork))))
	if err := b.s.Start(ctxT(t), b, false); !errors.Is(err, ErrRollback) || !strings.Contains(err.Error(), "fork") {
		t.Fatalf("Start at a forked anchor: %v, want ErrRollback (fork)", err)
	}
}

func (w *fakeWC) load2(t *testing.T, seq uint64) dedup.Locator {
	a, _ := w.load(ctxT(t), seq)
	return a.Hash
}

// A root Put that landed although its answer was lost: the next commit finds this
// device's own root at the number and continues after it (no conflict copy of its own
// work, no merge).
func TestLostAnswerAdopted(t *testing.T) {
	inner := newStore(t)
	fs := faulty.New(inner)
	a := newFake(t, fs, "dev-a")
	a.write("x", "1")
	okT(t, a.s.Commit(ctxT(t), a))
	fs.Add(faulty.Fault{Op: faulty.OpPut, NamePrefix: "r/", Times: 1, Kind: faulty.LostAck})
	a.write("y", "2")
	if err := a.s.Commit(ctxT(t), a); err == nil {
		t.Fatal("a lost answer without a retry layer did not fail the commit")
	}
	a.write("z", "3")
	okT(t, a.s.Commit(ctxT(t), a))
	if fmt.Sprint(a.adopts) != "[2]" || len(a.merges) != 0 {
		t.Fatalf("adopts %v merges %v; want root 2 adopted, no merge", a.adopts, a.merges)
	}
	newest, files := newestFiles(t, inner)
	if newest != 3 || len(files) != 3 {
		t.Fatalf("newest %d files %v", newest, files)
	}
}

// The same bytes already stored under the number (a retry after a lost answer) are success.
func TestSameRootAlreadyStored(t *testing.T) {
	store := newStore(t)
	a := newFake(t, store, "dev-a")
	a.write("x", "1")
	c, err := a.Build(ctxT(t), Anchor{})
	okT(t, err)
	okT(t, store.Put(ctxT(t), dedup.RootName(1), bytes.NewReader(c.Obj), int64(len(c.Obj))))
	if _, err := a.s.publish(ctxT(t), 1, c.Obj); err != nil {
		t.Fatalf("publish of the bytes already stored: %v", err)
	}
	other := append([]byte(nil), c.Obj...)
	other[len(other)-1] ^= 1
	if _, err := a.s.publish(ctxT(t), 1, other); !errors.Is(err, ErrConflict) {
		t.Fatalf("publish of other bytes: %v, want ErrConflict", err)
	}
}

// At open, roots after the anchor that this cache wrote itself (a crash before the anchor
// update) are adopted; another device's root after them is merged.
func TestStartAdoptsOwnRoots(t *testing.T) {
	store := newStore(t)
	a := newFake(t, store, "dev-a")
	a.write("x", "1")
	okT(t, a.s.Commit(ctxT(t), a))
	saved := a.Anchor()
	a.write("y", "2")
	okT(t, a.s.Commit(ctxT(t), a))
	b := newFake(t, store, "dev-b")
	okT(t, b.s.Start(ctxT(t), b, true))
	b.write("b", "b")
	okT(t, b.s.Commit(ctxT(t), b))
	// a restarts with the anchor of root 1 (root 2's anchor update was lost).
	a2 := newFake(t, store, "dev-a")
	a2.anchor, a2.files, a2.base, a2.dirty = saved, map[string]string{"x": "1", "y": "2"}, map[string]string{"x": "1"}, true
	okT(t, a2.s.Start(ctxT(t), a2, false))
	if fmt.Sprint(a2.adopts) != "[2]" || fmt.Sprint(a2.merges) != "[3]" {
		t.Fatalf("adopts %v merges %v; want root 2 adopted and root 3 merged", a2.adopts, a2.merges)
	}
}

// "No root ever references a missing object": an object new since the anchor that is gone
// from the store is uploaded again before the root; when it cannot be, no root is written.
func TestMissingObjectRestoredOrRefused(t *testing.T) {
	store := newStore(t)
	a := newFake(t, store, "dev-a")
	a.write("x", "1")
	okT(t, a.s.Commit(ctxT(t), a))
	present := dedup.ContentName(dedup.Locator{1})
	okT(t, store.Put(ctxT(t), present, strings.NewReader("here"), 4))
	gone := dedup.ContentName(dedup.Locator{2})
	a.refs = []string{present, gone}
	a.write("y", "2")
	okT(t, a.s.Commit(ctxT(t), a))
	if fmt.Sprint(a.restored) != fmt.Sprint([]string{gone}) {
		t.Fatalf("restored %v, want only %s", a.restored, gone)
	}
	if _, err := store.Stat(ctxT(t), gone); err != nil {
		t.Fatalf("the missing object was not stored again: %v", err)
	}
	lost := dedup.ContentName(dedup.Locator{3})
	a.refs, a.restoreErr = []string{lost}, fmt.Errorf("no copy: %w", ErrMissing)
	a.write("z", "3")
	if err := a.s.Commit(ctxT(t), a); !errors.Is(err, ErrMissing) {
		t.Fatalf("Commit with an object lost everywhere: %v, want ErrMissing", err)
	}
	if newest, _ := newestFiles(t, store); newest != 2 {
		t.Fatalf("a root (%d) was written that references a missing object", newest)
	}
	// A working copy that leaves the files of a lost object out: the root is built again
	// without it and written.
	a.restored = nil
	a.refs, a.restoreErr = []string{lost}, fmt.Errorf("no copy: %w", ErrLeftOut)
	okT(t, a.s.Commit(ctxT(t), a))
	if fmt.Sprint(a.restored) != fmt.Sprint([]string{lost}) || len(a.refs) != 0 {
		t.Fatalf("restore tried %v, refs left %v", a.restored, a.refs)
	}
	if newest, _ := newestFiles(t, store); newest != 3 {
		t.Fatalf("newest root %d after leaving the lost object out, want 3", newest)
	}
}

// A read-only cache whose anchor root gc collected (it has no presence record) finds the
// newest root on an anchor check and merges it; an unreachable store is not an error.
func TestRefreshAnchorCollectedAndOffline(t *testing.T) {
	inner := newStore(t)
	fs := faulty.New(inner)
	a := newFake(t, inner, "dev-a")
	for i := 1; i <= 3; i++ {
		a.write("f", fmt.Sprint(i))
		okT(t, a.s.Commit(ctxT(t), a))
	}
	ro := newFake(t, fs, "")
	okT(t, ro.s.Start(ctxT(t), ro, true))
	for i := 4; i <= 6; i++ {
		a.write("f", fmt.Sprint(i))
		okT(t, a.s.Commit(ctxT(t), a))
	}
	for _, s := range []uint64{3, 4, 5} { // gc keeps only the newest
		okT(t, inner.Delete(ctxT(t), dedup.RootName(s)))
	}
	okT(t, ro.s.Refresh(ctxT(t), ro, false))
	if len(ro.merges) != 0 {
		t.Fatal("merged without an anchor check")
	}
	fs.Add(faulty.Fault{Kind: faulty.Error})
	okT(t, ro.s.Refresh(ctxT(t), ro, true)) // offline: nothing, no error
	fs.Clear()
	okT(t, ro.s.Refresh(ctxT(t), ro, true))
	if fmt.Sprint(ro.merges) != "[6]" || ro.snapshot()["f"] != "6" {
		t.Fatalf("merges %v files %v; want root 6 merged", ro.merges, ro.snapshot())
	}
}

// A root stored whose anchor update failed (a full cache disk): the next commit, or a
// refresh, adopts it instead of merging the device's own root as another device's.
func TestStoredRootAnchorLostAdopted(t *testing.T) {
	store := newStore(t)
	a := newFake(t, store, "dev-a")
	a.write("x", "1")
	okT(t, a.s.Commit(ctxT(t), a))
	a.write("y", "2")
	a.doneErr = errors.New("disk full")
	if err := a.s.Commit(ctxT(t), a); err == nil {
		t.Fatal("the failed anchor update was not reported")
	}
	okT(t, a.s.Refresh(ctxT(t), a, false))
	a.write("z", "3")
	okT(t, a.s.Commit(ctxT(t), a))
	if fmt.Sprint(a.adopts) != "[2]" || len(a.merges) != 0 {
		t.Fatalf("adopts %v merges %v; want root 2 adopted, no merge", a.adopts, a.merges)
	}
	if newest, files := newestFiles(t, store); newest != 3 || len(files) != 3 {
		t.Fatalf("newest %d files %v", newest, files)
	}
}
