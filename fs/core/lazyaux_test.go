package core

import (
	"fmt"
	"testing"
	"time"
)

// TestLazyAux: changes of a table in Options.LazyAux start no root commit of their own
// (changes of another table do, within the commit delay); they join the next root, and a
// clean Close stores them, so a fresh cache reads them back.
func TestLazyAux(t *testing.T) {
	e := newEnv(t)
	e.opts.LazyAux = []string{"emb"}
	f := e.open()
	writeFile(t, f, "/a", []byte("a"))
	ok(t, f.Sync(ctx()))
	waitCommitted := func(what string) {
		t.Helper()
		for t0 := time.Now(); f.Status().PendingCommit; time.Sleep(5 * time.Millisecond) {
			if time.Since(t0) > 30*time.Second {
				t.Fatalf("%s: no root within 30 s", what)
			}
		}
	}
	// The committer runs: an eager table's change is in a root within a deadline.
	ok(t, f.PutAux("other", []byte("k"), []byte("v")))
	waitCommitted("a change of an eager aux table")

	// Lazy changes, each three commit delays after the last: were each to start a commit,
	// that would be a root each. A commit scheduled before the first (at most one running
	// and one kicked) may take some along.
	const n = 20
	seq := f.anchorSeq()
	for i := 0; i < n; i++ {
		ok(t, f.PutAux("emb", []byte(fmt.Sprint("k", i)), []byte(fmt.Sprint("v", i))))
		ok(t, f.DeleteAux("emb", []byte("nothing")))
		time.Sleep(3 * e.opts.CommitDelay) // spacing, not synchronisation
	}
	if roots := f.anchorSeq() - seq; roots > 2 {
		t.Fatalf("%d lazy changes made %d roots", n, roots)
	}
	if !f.Status().PendingCommit {
		t.Fatal("the last lazy changes are not marked for the next root")
	}
	// The next commit someone starts carries them.
	writeFile(t, f, "/b", []byte("b"))
	waitCommitted("the commit after a write")
	ok(t, f.PutAux("emb", []byte("last"), []byte("at close")))
	ok(t, f.Close())

	e.cache = t.TempDir()
	g := e.open()
	want := map[string]string{"last": "at close"}
	for i := 0; i < n; i++ {
		want[fmt.Sprint("k", i)] = fmt.Sprint("v", i)
	}
	for k, w := range want {
		if v, err := g.GetAux("emb", []byte(k)); err != nil || string(v) != w {
			t.Fatalf("fresh cache: emb %s = %q, %v; want %q", k, v, err, w)
		}
	}
}
