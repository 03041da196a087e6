package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func recs(lines ...string) []record {
	var out []record
	for _, l := range lines {
		f := strings.Split(l, " ")
		for len(f) < 4 {
			f = append(f, "")
		}
		out = append(out, record{Op: f[0], Path: f[1], SHA: f[2], Flags: f[3]})
	}
	return out
}

func TestAllowedStates(t *testing.T) {
	j := recs(
		"A p v1 t", "C p v1", "A p v2 t", // close-acked v1, then an unacked O_TRUNC rewrite
		"A q w1 t", "C q w1", "F q w1", "A q w2 t", "C q w2", // fsync-acked w1, close-acked w2
		"A tmp x t", "C tmp x", "A r x", "C r x", "G tmp  c", // rename without dir fsync
		"A n z t", // never acknowledged
	)
	cases := []struct {
		level, path string
		absent      bool
		shas        []string
	}{
		{levelClose, "p", false, []string{"v1", "v2", emptySHA}},
		{levelFsync, "p", true, []string{"v1", "v2", emptySHA}},
		{levelClose, "q", false, []string{"w2"}},
		{levelFsync, "q", false, []string{"w1", "w2", emptySHA}},
		{levelClose, "tmp", true, nil},
		{levelFsync, "tmp", true, []string{"x", emptySHA}},
		{levelClose, "r", false, []string{"x"}},
		{levelFsync, "r", true, []string{"x"}},
		{levelClose, "n", true, []string{"z", emptySHA}},
	}
	for _, c := range cases {
		a := allowedStates(j, c.level)[c.path]
		if a.absent != c.absent || len(a.shas) != len(c.shas) {
			t.Errorf("%s %s: got %v, want absent=%v %v", c.level, c.path, a, c.absent, c.shas)
			continue
		}
		for _, s := range c.shas {
			if !a.shas[s] {
				t.Errorf("%s %s: %s not allowed, got %v", c.level, c.path, s, a)
			}
		}
	}
}

func TestCheckTreeDetects(t *testing.T) {
	j := recs("A p v1 t", "C p v1", "A p v2 t", "A q w1 t", "C q w1", "F q w1")
	good := map[string]string{"p": "v2", "q": "w1"}
	if _, probs := checkTree(good, j, levelClose); len(probs) != 0 {
		t.Fatalf("good tree rejected: %v", probs)
	}
	for name, files := range map[string]map[string]string{
		"mix":        {"p": "mixed", "q": "w1"},
		"lost close": {"q": "w1"},
		"lost fsync": {"p": "v1"},
		"stranger":   {"p": "v1", "q": "w1", "zzz": "v1"},
	} {
		if _, probs := checkTree(files, j, levelClose); len(probs) == 0 {
			t.Errorf("%s: not detected", name)
		}
	}
	// At fsync level a lost close-acked file is fine, a lost fsync-acked one is not.
	if _, probs := checkTree(map[string]string{"q": "w1"}, j, levelFsync); len(probs) != 0 {
		t.Errorf("fsync level: %v", probs)
	}
	if _, probs := checkTree(map[string]string{"p": "v1"}, j, levelFsync); len(probs) == 0 {
		t.Errorf("fsync level: lost fsync-acked file not detected")
	}
}

// TestWriteVerifyPlainDir runs the writers on a plain directory for a moment (no crash) and
// checks that the verifier accepts the result, and that it rejects a torn file.
func TestWriteVerifyPlainDir(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	pool, err := makeSrcPool(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	jp := filepath.Join(dir, "journal")
	j, err := openJournal(jp)
	if err != nil {
		t.Fatal(err)
	}
	w := &writeRun{root: root, pool: pool, j: j, seed: 7, deadline: time.Now().Add(700 * time.Millisecond), perKind: 1}
	w.run()
	j.Close()
	if len(w.errs) > 0 {
		t.Fatalf("writer errors: %v", w.errs)
	}
	if w.acksClose.Load() < 6 || w.acksFsync.Load() < 1 {
		t.Fatalf("too few acks: close=%d fsync=%d", w.acksClose.Load(), w.acksFsync.Load())
	}
	r, err := readJournal(jp)
	if err != nil {
		t.Fatal(err)
	}
	files, probs := scanTree(root)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	st, probs := checkTree(files, r, levelClose)
	if len(probs) > 0 {
		t.Fatalf("clean run rejected: %v", probs)
	}
	if st.AckedClose != st.Present {
		t.Errorf("clean run: %+v", st)
	}
	// Tear one acknowledged file: keep its first half.
	var victim string
	for p := range files {
		if strings.HasPrefix(p, "trunc-0/") {
			victim = filepath.Join(root, p)
		}
	}
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victim, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	files, _ = scanTree(root)
	if _, probs := checkTree(files, r, levelClose); len(probs) == 0 {
		t.Fatal("torn file not detected")
	}
}

func TestJournalTornLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "j")
	if err := os.WriteFile(p, []byte("A\ta\tx\tt\nC\ta\tx\t\nC\tb\ty"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := readJournal(p)
	if err != nil || len(r) != 2 {
		t.Fatalf("got %v %v", r, err)
	}
}
