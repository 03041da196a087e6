package similar

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T, v *fakeVault, e *fakeEmbedder) *Indexer {
	t.Helper()
	return startWith(t, v, e)
}

// startWith starts an indexer over v with embedder e and waits for its graph.
func startWith(t *testing.T, v *fakeVault, e Embedder) *Indexer {
	t.Helper()
	return startConfig(t, v, Config{Embedder: e, Logger: quiet(), Workers: 2, Threshold: fakeThreshold})
}

// startConfig starts an indexer of cfg over v and waits for its graph.
func startConfig(t *testing.T, v Vault, cfg Config) *Indexer {
	t.Helper()
	x, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Start(v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Close)
	<-x.GraphReady()
	return x
}

func wait(t *testing.T, x *Indexer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := x.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func paths(ms []Match) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Path)
	}
	return out
}

func query(t *testing.T, x *Indexer, v *fakeVault, p string) []Match {
	t.Helper()
	ino, err := v.Resolve(p)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := x.Query(ino, 0, 0)
	if err != nil {
		t.Fatalf("Query(%s): %v", p, err)
	}
	return ms
}

// populate writes a small vault: group 1 (original, an edit, a byte-identical copy),
// group 2 (one photo, an edit), group 3 (alone), and a text file.
func populate(v *fakeVault, x *Indexer) {
	for _, f := range []struct {
		p    string
		g, n int
	}{
		{"2024/IMG_1.jpg", 1, 0}, {"edits/IMG_1.jpg", 1, 1}, {"copies/same.jpg", 1, 0},
		{"2024/IMG_2.jpg", 2, 0}, {"2023/IMG_2b.jpg", 2, 2}, {"2024/IMG_3.jpg", 3, 0},
	} {
		ino := v.write(f.p, fakeImage(f.g, f.n))
		if x != nil {
			x.OnSealed(ino)
		}
	}
	ino := v.write("notes.txt", []byte("shopping list"))
	if x != nil {
		x.OnSealed(ino)
	}
}

func TestIndexQueryRenameUnlink(t *testing.T) {
	v := newFakeVault()
	e := &fakeEmbedder{id: "fake/1"}
	x := start(t, v, e)
	populate(v, x)
	wait(t, x)

	ms := query(t, x, v, "2024/IMG_1.jpg")
	if got, want := paths(ms), []string{"copies/same.jpg", "edits/IMG_1.jpg"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("matches = %v, want %v", got, want)
	}
	if ms[0].Score != 1 || ms[0].Tier != "identical" || ms[1].Score >= 1 || ms[1].Score < x.Threshold() {
		t.Fatalf("scores/tiers wrong: %+v", ms)
	}
	if ms := query(t, x, v, "2024/IMG_3.jpg"); len(ms) != 0 {
		t.Fatalf("a lone photo matched %v", paths(ms))
	}
	// Byte-identical content is embedded once: 5 distinct images, the text file is read
	// (magic check) but never reaches the decoder.
	if n := e.calls.Load(); n != 5 {
		t.Fatalf("embedder called %d times, want 5", n)
	}
	if st := x.Stats(); st.Embeddings != 5 || st.Skipped != 1 || st.Backlog != 0 {
		t.Fatalf("stats %+v", st)
	}
	if len(v.aux[TableQueue]) != 0 {
		t.Fatalf("queue not drained: %d", len(v.aux[TableQueue]))
	}

	// Rename: followed at query time, no re-embedding.
	v.rename("edits/IMG_1.jpg", "2024/IMG_1-edit.jpg")
	if got := paths(query(t, x, v, "2024/IMG_1.jpg")); !reflect.DeepEqual(got, []string{"copies/same.jpg", "2024/IMG_1-edit.jpg"}) {
		t.Fatalf("after rename: %v", got)
	}
	// Unlink: the match vanishes.
	v.unlink("copies/same.jpg")
	if got := paths(query(t, x, v, "2024/IMG_1.jpg")); !reflect.DeepEqual(got, []string{"2024/IMG_1-edit.jpg"}) {
		t.Fatalf("after unlink: %v", got)
	}
	// Overwrite: the old content's matches go, the new content's come.
	ino, _ := v.Resolve("2024/IMG_3.jpg")
	v.write("2024/IMG_3.jpg", fakeImage(2, 5))
	x.OnSealed(ino)
	wait(t, x)
	if got := paths(query(t, x, v, "2024/IMG_3.jpg")); !reflect.DeepEqual(got, []string{"2024/IMG_2.jpg", "2023/IMG_2b.jpg"}) &&
		!reflect.DeepEqual(got, []string{"2023/IMG_2b.jpg", "2024/IMG_2.jpg"}) {
		t.Fatalf("after overwrite: %v", got)
	}
	if e.calls.Load() != 6 {
		t.Fatalf("embedder calls %d, want 6", e.calls.Load())
	}
	// Lower threshold through the index, top-k.
	ino1, _ := v.Resolve("2024/IMG_1.jpg")
	all, _ := x.Query(ino1, -1, 0)
	top, _ := x.Query(ino1, -1, 2)
	if len(all) != 4 || len(top) != 2 || top[0] != all[0] || top[1] != all[1] {
		t.Fatalf("threshold -1: %d matches, top 2 = %+v", len(all), top)
	}
	pairs := x.AllPairs(0)
	var ps []string
	for _, p := range pairs {
		ps = append(ps, p.A+"|"+p.B)
	}
	sort.Strings(ps)
	want := []string{"2023/IMG_2b.jpg|2024/IMG_2.jpg", "2023/IMG_2b.jpg|2024/IMG_3.jpg", "2024/IMG_1-edit.jpg|2024/IMG_1.jpg", "2024/IMG_2.jpg|2024/IMG_3.jpg"}
	if !reflect.DeepEqual(ps, want) {
		t.Fatalf("AllPairs = %v, want %v", ps, want)
	}
}

func TestRestartReindexAndQueue(t *testing.T) {
	v := newFakeVault()
	e := &fakeEmbedder{id: "fake/1"}
	// Files sealed before the indexer starts (OnSealed before Start) and files sealed
	// while no indexer ran at all: both get embedded.
	x, _ := New(Config{Embedder: e, Logger: quiet(), Threshold: fakeThreshold})
	populate(v, x)
	if err := x.Start(v); err != nil {
		t.Fatal(err)
	}
	wait(t, x)
	x.Close()
	if e.calls.Load() != 5 {
		t.Fatalf("first run: %d embeddings", e.calls.Load())
	}
	v.write("late/IMG_1.png", fakeImage(1, 7)) // sealed while unmounted: no OnSealed
	// A queue entry left by a crash.
	ino2, _ := v.Resolve("2024/IMG_2.jpg")
	v.PutAux(TableQueue, inoKey(ino2), []byte{0})

	x2 := start(t, v, e)
	wait(t, x2)
	if e.calls.Load() != 6 {
		t.Fatalf("restart re-embedded: %d calls, want 6", e.calls.Load())
	}
	got := paths(query(t, x2, v, "2024/IMG_1.jpg"))
	if len(got) != 3 {
		t.Fatalf("after restart: %v", got)
	}
	x2.Close()

	// A new model: old embeddings are ignored and recomputed in the background.
	e2 := &fakeEmbedder{id: "fake/2"}
	x3 := start(t, v, e2)
	wait(t, x3)
	if st := x3.Stats(); st.Stale != 0 || st.Embeddings != 6 || e2.calls.Load() != 6 {
		t.Fatalf("new model stats %+v, %d calls", st, e2.calls.Load())
	}
	// Reindex recomputes everything (8 files; the text file is skipped again).
	n, err := x3.Reindex()
	if err != nil || n != 8 {
		t.Fatalf("Reindex = %d, %v", n, err)
	}
	wait(t, x3)
	if st := x3.Stats(); st.Embeddings != 6 || e2.calls.Load() != 12 {
		t.Fatalf("after reindex %+v, %d calls", st, e2.calls.Load())
	}
	if got := paths(query(t, x3, v, "2024/IMG_1.jpg")); len(got) != 3 {
		t.Fatalf("after reindex: %v", got)
	}
	// Orphans (content no file has any more) are dropped at start.
	v.unlink("late/IMG_1.png")
	x3.Close()
	x4 := start(t, v, e2)
	if x4.Stats().Embeddings != 5 || len(v.aux[TableEmb]) != 5 {
		t.Fatalf("orphan not dropped: %+v, %d stored", x4.Stats(), len(v.aux[TableEmb]))
	}
}

func TestUniqueNames(t *testing.T) {
	ms := []Match{{Path: "a/IMG.jpg"}, {Path: "b/IMG.jpg"}, {Path: "c/IMG~2.jpg"}, {Path: "d/IMG.jpg"}, {Path: "x/.hidden"}, {Path: "y/.hidden"}, {Path: "z/noext"}, {Path: "w/noext"}}
	want := []string{"IMG.jpg", "IMG~2.jpg", "IMG~2~2.jpg", "IMG~3.jpg", ".hidden", ".hidden~2", "noext", "noext~2"}
	if got := UniqueNames(ms); !reflect.DeepEqual(got, want) {
		t.Fatalf("UniqueNames = %v, want %v", got, want)
	}
}

// TestTree checks what .similar/ shows (the bazil nodes over it are fs/similar_nodes.go;
// the integration test reads it through a real mount).
func TestTree(t *testing.T) {
	v := newFakeVault()
	e := &fakeEmbedder{id: "fake/1"}
	x := start(t, v, e)
	populate(v, x)
	wait(t, x)
	ls := func(rel string) []string {
		t.Helper()
		ino, err := v.Resolve(rel)
		if err != nil {
			t.Fatal(err)
		}
		ents, err := x.TreeDir(ino, rel)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name)
		}
		return out
	}
	links := func(rel string) []Link {
		t.Helper()
		ino, err := v.Resolve(rel)
		if err != nil {
			t.Fatal(err)
		}
		return x.Links(ino, rel)
	}
	names := func(ls []Link) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Name)
		}
		return out
	}
	if x.EntryValid() != time.Second {
		t.Fatalf("EntryValid = %v", x.EntryValid())
	}
	// Only directories with a match inside: 2024, 2023, edits, copies; not notes.txt.
	if got := ls(""); !reflect.DeepEqual(got, []string{"2023", "2024", "copies", "edits"}) {
		t.Fatalf(".similar/ = %v", got)
	}
	if got := ls("2024"); !reflect.DeepEqual(got, []string{"IMG_1.jpg", "IMG_2.jpg"}) {
		t.Fatalf(".similar/2024 = %v", got)
	}
	// A photo without matches has no links.
	if got := links("2024/IMG_3.jpg"); len(got) != 0 {
		t.Fatalf("lone photo: %v", got)
	}
	md := links("2024/IMG_1.jpg")
	if got := names(md); !reflect.DeepEqual(got, []string{"same.jpg", "IMG_1.jpg"}) {
		t.Fatalf("matches of 2024/IMG_1.jpg = %v", got)
	}
	if lines := strings.Split(string(LinksXattr(md)), "\n"); len(lines) != 3 || lines[0] != "1.0000\tsame.jpg" || !strings.HasSuffix(lines[1], "\tIMG_1.jpg") || lines[2] != "" {
		t.Fatalf("match dir xattr = %q", LinksXattr(md))
	}
	want := map[string]string{"same.jpg": "../../../copies/same.jpg", "IMG_1.jpg": "../../../edits/IMG_1.jpg"}
	for _, l := range md {
		if l.Target != want[l.Name] {
			t.Fatalf("%s -> %s, want %s", l.Name, l.Target, want[l.Name])
		}
		if l.Name == "same.jpg" && l.Score != 1 || l.Name != "same.jpg" && (l.Score >= 1 || l.Score < fakeThreshold) {
			t.Fatalf("score of %s = %v", l.Name, l.Score)
		}
	}
	// After a rename the listing follows within the validity (snapshot rebuilt).
	v.rename("copies/same.jpg", "2024/dup.jpg")
	time.Sleep(1100 * time.Millisecond)
	if got := ls(""); !reflect.DeepEqual(got, []string{"2023", "2024", "edits"}) {
		t.Fatalf(".similar/ after rename = %v", got)
	}
	if got := names(links("2024/IMG_1.jpg")); !reflect.DeepEqual(got, []string{"dup.jpg", "IMG_1.jpg"}) {
		t.Fatalf("after rename: %v", got)
	}
	// Nested paths get one more "../" per level.
	v.write("a/b/c/IMG_1.jpg", fakeImage(1, 0))
	ino, _ := v.Resolve("a/b/c/IMG_1.jpg")
	x.OnSealed(ino)
	wait(t, x)
	for _, d := range []string{"a", "a/b", "a/b/c"} {
		if got := ls(d); len(got) != 1 {
			t.Fatalf(".similar/%s = %v", d, got)
		}
	}
	found := false
	for _, l := range links("a/b/c/IMG_1.jpg") {
		if l.Name == "IMG_1.jpg" {
			found = l.Target == "../../../../../2024/IMG_1.jpg"
		}
	}
	if !found {
		t.Fatalf("nested target: %v", links("a/b/c/IMG_1.jpg"))
	}
}

func TestServe(t *testing.T) {
	v := newFakeVault()
	x := start(t, v, &fakeEmbedder{id: "fake/1"})
	populate(v, x)
	wait(t, x)
	r, err := x.Serve(QueryRequest{Paths: []string{"/2024/IMG_2.jpg", "missing.jpg"}, Top: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != 2 || len(r.Results[0].Matches) != 1 || r.Results[0].Matches[0].Path != "2023/IMG_2b.jpg" || r.Results[1].Error == "" {
		t.Fatalf("Serve = %+v", r)
	}
	r, _ = x.Serve(QueryRequest{All: true})
	if len(r.Pairs) != 4 { // group 1: 3 pairs (one identical), group 2: 1
		t.Fatalf("all pairs = %+v", r.Pairs)
	}
	if _, err := x.Serve(QueryRequest{Threshold: 2}); err == nil {
		t.Fatal("threshold 2 accepted")
	}
}

// fakeThreshold suits fakeEmbedder's scores (variants ~0.89-0.94, unrelated ~0.3).
const fakeThreshold = 0.8
