package maint

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/internal/memstore"
	"github.com/imgfs/imgfs/dedup/keyring"
)

var ctx = context.Background()

func testKeys(t *testing.T, mode string) *keyring.Keys {
	t.Helper()
	k := &keyring.Keys{Mode: mode, MetaKey: make(keyring.Secret, 32), ConvergenceSecret: make(keyring.Secret, 32)}
	rand.Read(k.MetaKey)
	rand.Read(k.ConvergenceSecret)
	return k
}

// vault is a tiny hand-built vault: content objects, one metadata object, one root.
type vault struct {
	store *memstore.Store
	keys  *keyring.Keys
	refs  map[string]dedup.Ref // content name -> ref
	plain map[string][]byte
	meta  string
	root  string
}

func putContent(t testing.TB, v *vault, p []byte) string {
	t.Helper()
	var obj bytes.Buffer
	ref, err := dedup.Seal(v.keys.ConvergenceSecret, bytes.NewReader(p), int64(len(p)), &obj)
	if err != nil {
		t.Fatal(err)
	}
	name := dedup.ContentName(ref.Locator)
	if err := v.store.Put(ctx, name, bytes.NewReader(obj.Bytes()), int64(obj.Len())); err != nil {
		t.Fatal(err)
	}
	v.refs[name] = ref
	v.plain[name] = p
	return name
}

func newVault(t *testing.T, mode string, contents ...[]byte) *vault {
	t.Helper()
	v := &vault{store: memstore.New(), keys: testKeys(t, mode), refs: map[string]dedup.Ref{}, plain: map[string][]byte{}}
	for _, c := range contents {
		putContent(t, v, c)
	}
	obj, loc, err := dedup.SealMeta(v.keys.MetaKey, "tree", []byte("a tree"))
	if err != nil {
		t.Fatal(err)
	}
	v.meta = dedup.MetaName(loc)
	v.store.Put(ctx, v.meta, bytes.NewReader(obj), int64(len(obj)))
	robj, _, err := dedup.SealRoot(v.keys.MetaKey, 1, []byte("root"))
	if err != nil {
		t.Fatal(err)
	}
	v.root = dedup.RootName(1)
	v.store.Put(ctx, v.root, bytes.NewReader(robj), int64(len(robj)))
	return v
}

func (v *vault) live(content ...string) map[string]bool {
	m := map[string]bool{v.meta: true, v.root: true}
	for _, c := range content {
		m[c] = true
	}
	return m
}

func (v *vault) readData(names ...string) func(context.Context, func(int64), func(string, error)) error {
	return func(ctx context.Context, data func(int64), problem func(string, error)) error {
		for _, n := range names {
			obj := v.store.Raw(n)
			p, err := dedup.Open(v.refs[n], obj)
			if err != nil {
				problem("file-"+n[len(n)-6:], err)
				continue
			}
			if !bytes.Equal(p, v.plain[n]) {
				problem("file-"+n[len(n)-6:], errors.New("wrong bytes"))
			}
			data(int64(len(p)))
		}
		return nil
	}
}

func flipByte(t *testing.T, s *memstore.Store, name string, off int) {
	t.Helper()
	b := s.Raw(name)
	if b == nil {
		t.Fatalf("no object %s", name)
	}
	b[off%len(b)] ^= 0x40
	if err := s.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, name, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

func names(v *vault) []string {
	var out []string
	for n := range v.refs {
		out = append(out, n)
	}
	return out
}

func TestCheckCleanVault(t *testing.T) {
	v := newVault(t, keyring.ModeVault, []byte("one"), []byte("two"), bytes.Repeat([]byte{7}, 200_000))
	all := names(v)
	rep, err := Check(ctx, v.store, v.keys, CheckOptions{Live: v.live(all...), ReadData: v.readData(all...)})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("problems in a clean vault: %v", rep.Problems)
	}
	if rep.ContentObjects != 3 || rep.MetaObjects != 1 || rep.Roots != 1 || len(rep.Unreferenced) != 0 {
		t.Fatalf("counts: %+v", rep)
	}
	if rep.DataBytes != 3+3+200_000 {
		t.Fatalf("data bytes %d", rep.DataBytes)
	}
}

func TestCheckFindsCorruptMissingUnreferenced(t *testing.T) {
	v := newVault(t, keyring.ModeVault, []byte("alpha"), []byte("beta"), []byte("gamma"))
	all := names(v)
	victim, gone, spare := all[0], all[1], all[2]
	live := v.live(victim, gone)
	flipByte(t, v.store, victim, 40)
	if err := v.store.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	rep, err := Check(ctx, v.store, v.keys, CheckOptions{Live: live})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{victim: Corrupt, gone: Missing}
	if len(rep.Problems) != 2 {
		t.Fatalf("problems: %v", rep.Problems)
	}
	for _, p := range rep.Problems {
		if want[p.Name] != p.Kind {
			t.Fatalf("unexpected problem %v", p)
		}
	}
	if len(rep.Unreferenced) != 1 || rep.Unreferenced[0] != spare {
		t.Fatalf("unreferenced %v, want [%s]", rep.Unreferenced, spare)
	}
}

func TestCheckMetaAndRootTamper(t *testing.T) {
	v := newVault(t, keyring.ModeVault, []byte("x"))
	flipByte(t, v.store, v.meta, 100)
	flipByte(t, v.store, v.root, 100)
	rep, err := Check(ctx, v.store, v.keys, CheckOptions{Live: v.live(names(v)...)})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(rep.Problems)
	if !strings.Contains(got, v.meta) || !strings.Contains(got, v.root) {
		t.Fatalf("tampered metadata/root not reported: %v", rep.Problems)
	}
}

// A flipped byte inside a content object is found by the hash pass and, independently,
// by the data pass (decryption).
func TestCheckReadDataFindsTamper(t *testing.T) {
	v := newVault(t, keyring.ModeVault, bytes.Repeat([]byte("photo"), 30000))
	all := names(v)
	flipByte(t, v.store, all[0], 5000)
	rep, err := Check(ctx, v.store, v.keys, CheckOptions{Live: v.live(all...), ReadData: v.readData(all...)})
	if err != nil {
		t.Fatal(err)
	}
	var hashFound, dataFound bool
	for _, p := range rep.Problems {
		hashFound = hashFound || p.Name == all[0]
		dataFound = dataFound || (p.Name == "" && strings.HasPrefix(p.Detail, "file-"))
	}
	if !hashFound || !dataFound {
		t.Fatalf("hash %v data %v: %v", hashFound, dataFound, rep.Problems)
	}
}

func TestCheckBadNames(t *testing.T) {
	v := newVault(t, keyring.ModeVault)
	v.store.Put(ctx, "c/zz/not-a-locator", bytes.NewReader([]byte("x")), 1)
	v.store.Put(ctx, "r/1", bytes.NewReader([]byte("x")), 1)
	rep, err := Check(ctx, v.store, v.keys, CheckOptions{Live: v.live()})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range rep.Problems {
		if p.Kind == BadName {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("bad names reported %d, want 2: %v", n, rep.Problems)
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestGCGracePeriod(t *testing.T) {
	v := newVault(t, keyring.ModeVault, []byte("keep me"), []byte("drop me"), []byte("drop me too"))
	all := names(v)
	var keep []string
	var drop []string
	for _, n := range all {
		if string(v.plain[n]) == "keep me" {
			keep = append(keep, n)
		} else {
			drop = append(drop, n)
		}
	}
	live := v.live(keep...)
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := GCOptions{Grace: time.Hour, Now: c.now, Owner: "test", Live: func(context.Context) (map[string]bool, error) { return live, nil }}

	rep, err := GC(ctx, v.store, v.keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 0 || rep.NewlyMarked != 2 || rep.Waiting != 2 {
		t.Fatalf("first run: %+v", rep)
	}
	c.t = c.t.Add(59 * time.Minute)
	rep, err = GC(ctx, v.store, v.keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 0 || rep.NewlyMarked != 0 {
		t.Fatalf("inside grace: %+v", rep)
	}
	c.t = c.t.Add(2 * time.Minute)
	rep, err = GC(ctx, v.store, v.keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 2 {
		t.Fatalf("after grace: %+v", rep)
	}
	for _, n := range drop {
		if v.store.Raw(n) != nil {
			t.Fatalf("%s survived", n)
		}
	}
	for n := range live {
		if v.store.Raw(n) == nil {
			t.Fatalf("referenced %s deleted", n)
		}
	}
	if len(v.store.Names(StatePrefix)) != 1 || len(v.store.Names("locks/")) != 0 {
		t.Fatalf("state %v locks %v", v.store.Names(StatePrefix), v.store.Names("locks/"))
	}
	// A vault that is all live: nothing to do, nothing deleted.
	rep, err = GC(ctx, v.store, v.keys, opts)
	if err != nil || len(rep.Deleted) != 0 || rep.Unreferenced != 0 {
		t.Fatalf("idle run: %+v %v", rep, err)
	}
}

// T37 at the GC layer: a writer references an object after GC's first look (the second
// live set contains it): GC must not delete it.
func TestGCRescuesObjectReferencedMeanwhile(t *testing.T) {
	v := newVault(t, keyring.ModeVault, []byte("dedup target"))
	obj := names(v)[0]
	calls := 0
	opts := GCOptions{Grace: 0, Owner: "test", Live: func(context.Context) (map[string]bool, error) {
		calls++
		if calls == 1 {
			return v.live(), nil
		}
		return v.live(obj), nil // the writer committed a root referencing obj
	}}
	rep, err := GC(ctx, v.store, v.keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rescued != 1 || len(rep.Deleted) != 0 || v.store.Raw(obj) == nil {
		t.Fatalf("rescue failed: %+v", rep)
	}
}

func TestGCLock(t *testing.T) {
	v := newVault(t, keyring.ModeVault, []byte("a"))
	opts := GCOptions{Owner: "other-host pid 1", Live: func(context.Context) (map[string]bool, error) { return v.live(), nil }}
	if err := lock(ctx, v.store, v.keys, GCOptions{Owner: "other-host pid 1", Now: time.Now}); err != nil {
		t.Fatal(err)
	}
	_, err := GC(ctx, v.store, v.keys, opts)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "other-host") {
		t.Fatalf("err = %v, want ErrLocked naming the owner", err)
	}
	if len(v.store.Names("c/")) != 1 {
		t.Fatal("locked gc deleted something")
	}
	opts.BreakLock = true
	rep, err := GC(ctx, v.store, v.keys, opts)
	if err != nil || len(rep.Deleted) != 1 {
		t.Fatalf("break-lock run: %+v %v", rep, err)
	}
	if len(v.store.Names("locks/")) != 0 {
		t.Fatal("lock left behind")
	}
}

func TestGCSharedModeKeepsContent(t *testing.T) {
	v := newVault(t, keyring.ModeGroup, []byte("shared"))
	obj, loc, _ := dedup.SealMeta(v.keys.MetaKey, "tree", []byte("old tree"))
	oldMeta := dedup.MetaName(loc)
	v.store.Put(ctx, oldMeta, bytes.NewReader(obj), int64(len(obj)))
	rep, err := GC(ctx, v.store, v.keys, GCOptions{Live: func(context.Context) (map[string]bool, error) { return v.live(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.KeptShared != 1 || len(rep.Deleted) != 1 || rep.Deleted[0] != oldMeta {
		t.Fatalf("group mode: %+v", rep)
	}
}

func TestGCIgnoresForeignNames(t *testing.T) {
	v := newVault(t, keyring.ModeVault)
	v.store.Put(ctx, "c/zz/something-else", bytes.NewReader([]byte("x")), 1)
	rep, err := GC(ctx, v.store, v.keys, GCOptions{Live: func(context.Context) (map[string]bool, error) { return v.live(), nil }})
	if err != nil || len(rep.Deleted) != 0 || v.store.Raw("c/zz/something-else") == nil {
		t.Fatalf("foreign object touched: %+v %v", rep, err)
	}
}

func TestGCStateSurvivesDamage(t *testing.T) {
	v := newVault(t, keyring.ModeVault, []byte("a"))
	c := &clock{t: time.Unix(1000, 0)}
	opts := GCOptions{Grace: time.Hour, Now: c.now, Live: func(context.Context) (map[string]bool, error) { return v.live(), nil }}
	if _, err := GC(ctx, v.store, v.keys, opts); err != nil {
		t.Fatal(err)
	}
	st := v.store.Names(StatePrefix)
	if len(st) != 1 {
		t.Fatalf("state objects %v", st)
	}
	flipByte(t, v.store, st[0], 70)
	c.t = c.t.Add(2 * time.Hour)
	rep, err := GC(ctx, v.store, v.keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The damaged state is ignored: the grace period restarts, nothing is deleted.
	if len(rep.Deleted) != 0 || rep.NewlyMarked != 1 {
		t.Fatalf("damaged state: %+v", rep)
	}
}

func FuzzDecodeMarks(f *testing.F) {
	name := dedup.ContentName(dedup.Hash([]byte("x")))
	f.Add(encodeMarks(map[string]time.Time{name: time.Unix(5, 6)}))
	f.Add([]byte("imgfs gc state v1\n"))
	f.Add([]byte("imgfs gc state v1\n12 c/00/zz\n"))
	f.Add([]byte("imgfs gc state v1\nnotanumber " + name + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMarks(b)
		if err != nil {
			return
		}
		m2, err := decodeMarks(encodeMarks(m))
		if err != nil || len(m2) != len(m) {
			t.Fatalf("round trip: %v %d/%d", err, len(m2), len(m))
		}
		for k, v := range m {
			if !m2[k].Equal(v) {
				t.Fatalf("round trip changed %s", k)
			}
		}
	})
}

// BenchmarkCheck measures the hash pass (list + get + SHA-256 of every object) over an
// in-memory store: 32 content objects of 1 MiB.
func BenchmarkCheck(b *testing.B) {
	v := &vault{store: memstore.New(), keys: &keyring.Keys{Mode: keyring.ModeVault, MetaKey: make(keyring.Secret, 32), ConvergenceSecret: make(keyring.Secret, 32)},
		refs: map[string]dedup.Ref{}, plain: map[string][]byte{}}
	var all []string
	for i := 0; i < 32; i++ {
		p := make([]byte, 1<<20)
		rand.Read(p)
		all = append(all, putContent(b, v, p))
	}
	live := map[string]bool{}
	var total int64
	for _, n := range all {
		live[n] = true
		total += int64(len(v.store.Raw(n)))
	}
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := Check(ctx, v.store, v.keys, CheckOptions{Live: live})
		if err != nil || !rep.OK() {
			b.Fatal(err, rep.Problems)
		}
	}
}
