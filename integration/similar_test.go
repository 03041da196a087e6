package integration

// The near-duplicate feature through a real mount: originals, ImageMagick-made variants and
// unrelated distractors are copied in with cp; .similar/ must list each original's variants
// (best first, relative symlinks that resolve inside the mount, scores as xattrs) and no
// distractor; after rename and unlink the listing follows; find/du/ls -R stay finite; and
// `imgfs similar` prints the same with scores.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// similarModel is the embedding model the daemon needs (scripts/fetch-model.sh).
func similarModel(t *testing.T) string {
	t.Helper()
	p := filepath.Join(repoRoot(), "models", "mobilenet_v2.imgfsmodel")
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("model missing (CI=true): %v; run scripts/fetch-model.sh", err)
		}
		t.Skipf("model missing: %v (run scripts/fetch-model.sh)", err)
	}
	return p
}

// Originals: drawn by ImageMagick, chosen to be unlike each other and the distractors.
var similarOriginals = map[string][]string{
	"wizard.jpg": {"wizard:", "-resize", "640x480!", "-quality", "92"},
	"shapes.jpg": {"-size", "640x480", "radial-gradient:yellow-navy", "-fill", "red", "-draw", "circle 320,240 400,300",
		"-fill", "green", "-draw", "rectangle 50,50 200,150", "-quality", "92"},
}

// Distractors: unrelated pictures.
var similarDistractors = map[string][]string{
	"granite.jpg": {"granite:", "-resize", "640x480!", "-quality", "92"},
	"plasma.jpg":  {"-seed", "7", "-size", "640x480", "plasma:fractal", "-quality", "92"},
}

// Variants: transform name -> ImageMagick operations on the original; the output format
// is the file name's.
var similarVariants = []struct {
	name, ext string
	ops       []string
}{
	{"resize", "jpg", []string{"-resize", "50%"}},
	{"recompress", "jpg", []string{"-quality", "25"}},
	{"crop", "jpg", []string{"-gravity", "center", "-crop", "90%x90%+0+0", "+repage"}},
	{"rotate", "jpg", []string{"-rotate", "3", "-gravity", "center", "-crop", "90%x90%+0+0", "+repage"}},
	{"recolour", "jpg", []string{"-modulate", "105,125,100"}},
	{"watermark", "jpg", []string{"-gravity", "south", "-pointsize", "36", "-fill", "white", "-annotate", "+0+20", "imgfs 2024"}},
	{"format", "png", nil},
}

func convert(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(convertBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("convert %v: %v: %s", args, err, out)
	}
}

// similarEntries reads a .similar/ match directory in readdir order: name -> (target, score).
type simEntry struct {
	name, target, resolved string
	score                  float64
}

func readSimilar(t *testing.T, mnt, dir string) ([]simEntry, error) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1) // readdir order, not sorted
	f.Close()
	if err != nil {
		return nil, err
	}
	// Scores: the match directory's xattr (Linux refuses user.* xattrs on symlinks).
	buf := make([]byte, 1<<16)
	k, err := unix.Getxattr(dir, "user.imgfs.similarity", buf)
	if err != nil {
		t.Fatalf("getxattr %s: %v", dir, err)
	}
	scores := map[string]float64{}
	var order []string
	for _, l := range strings.Split(strings.TrimSuffix(string(buf[:k]), "\n"), "\n") {
		if l == "" {
			continue
		}
		f := strings.SplitN(l, "\t", 2)
		s, err := strconv.ParseFloat(f[0], 64)
		if len(f) != 2 || err != nil || s <= 0 || s > 1 {
			t.Fatalf("xattr line of %s: %q", dir, l)
		}
		scores[f[1]] = s
		order = append(order, f[1])
	}
	if strings.Join(order, "/") != strings.Join(names, "/") {
		t.Fatalf("%s: readdir order %v, xattr order %v", dir, names, order)
	}
	var out []simEntry
	for _, n := range names {
		p := filepath.Join(dir, n)
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatalf("readlink %s: %v", p, err)
		}
		if filepath.IsAbs(target) {
			t.Fatalf("%s -> %s: absolute target", p, target)
		}
		res := filepath.Clean(filepath.Join(dir, target))
		rel, err := filepath.Rel(mnt, res)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Fatalf("%s -> %s resolves outside the mount (%s)", p, target, res)
		}
		out = append(out, simEntry{n, target, rel, scores[n]})
	}
	return out, nil
}

func TestSimilarTree(t *testing.T) {
	model := similarModel(t)
	need(t, convertBin)
	m := startVault(t, vaultOptions{Env: []string{"IMGFS_MODEL=" + model}})
	src := t.TempDir()
	for name, args := range similarOriginals {
		convert(t, append(args, filepath.Join(src, name))...)
	}
	for name, args := range similarDistractors {
		convert(t, append(args, filepath.Join(src, name))...)
	}
	want := map[string][]string{} // original -> its variants (paths in the mount)
	os.MkdirAll(filepath.Join(src, "edits"), 0o755)
	for name := range similarOriginals {
		stem := strings.TrimSuffix(name, filepath.Ext(name))
		for _, v := range similarVariants {
			out := fmt.Sprintf("%s-%s.%s", stem, v.name, v.ext)
			args := append([]string{filepath.Join(src, name)}, v.ops...)
			convert(t, append(args, filepath.Join(src, "edits", out))...)
			want["photos/"+name] = append(want["photos/"+name], "photos/edits/"+out)
		}
		// A byte-identical copy in another folder.
		want["photos/"+name] = append(want["photos/"+name], "backup/"+name)
	}
	os.MkdirAll(filepath.Join(m.Dir, "backup"), 0o755)
	sh(t, "", fmt.Sprintf("cp -r %s %s/photos && for f in %s; do cp %s/$f %s/backup/; done",
		src, m.Dir, strings.Join(keys(similarOriginals), " "), src, m.Dir))
	m.Sync() // waits for sealing and embedding

	// .similar/ lists the folders with near-duplicates, not the distractors.
	top := readNames(t, filepath.Join(m.Dir, ".similar"))
	if !equalSets(top, []string{"backup", "photos"}) {
		t.Fatalf(".similar/ = %v", top)
	}
	listed := readNames(t, filepath.Join(m.Dir, ".similar", "photos"))
	for d := range similarDistractors {
		for _, n := range listed {
			if n == d {
				t.Errorf(".similar/photos lists the distractor %s", d)
			}
		}
	}
	found, total := 0, 0
	for orig, variants := range want {
		ents, err := readSimilar(t, m.Dir, filepath.Join(m.Dir, ".similar", orig))
		if err != nil {
			t.Fatalf("%s: %v", orig, err)
		}
		got := map[string]simEntry{}
		for i, e := range ents {
			got[e.resolved] = e
			if i > 0 && e.score > ents[i-1].score {
				t.Errorf("%s: not best first: %v", orig, ents)
			}
			for d := range similarDistractors {
				if strings.HasSuffix(e.resolved, "/"+d) {
					t.Errorf("%s lists the distractor %s (score %.4f)", orig, d, e.score)
				}
			}
		}
		for _, v := range variants {
			total++
			e, ok := got[v]
			if !ok {
				t.Errorf("%s: variant %s missing from .similar/ (entries %v)", orig, v, ents)
				continue
			}
			found++
			if strings.HasPrefix(v, "backup/") && e.score != 1 {
				t.Errorf("byte-identical copy %s has score %v", v, e.score)
			}
			// The symlink resolves to the same bytes.
			a, _ := os.ReadFile(filepath.Join(m.Dir, ".similar", orig, e.name))
			b, _ := os.ReadFile(filepath.Join(m.Dir, v))
			if len(a) == 0 || string(a) != string(b) {
				t.Errorf("%s/%s does not read as %s", orig, e.name, v)
			}
		}
		// Entry names are unique by the documented rule: the two copies named like the
		// original ("backup/wizard.jpg" and no other) keep the base name.
		if e, ok := got["backup/"+filepath.Base(orig)]; ok && e.name != filepath.Base(orig) {
			t.Errorf("identical copy entry named %s", e.name)
		}
	}
	t.Logf("variants found: %d of %d", found, total)

	// imgfs similar prints the same matches with scores.
	if ms := similarJSON(t, m, filepath.Join(m.Dir, "photos", "wizard.jpg")); len(ms) != len(want["photos/wizard.jpg"]) {
		t.Errorf("imgfs similar: %d matches, want %d: %v", len(ms), len(want["photos/wizard.jpg"]), ms)
	}
	all := m.Imgfs(t, "similar", "--all", m.Dir)
	if lines := strings.Count(all, "\n"); lines < found {
		t.Errorf("imgfs similar --all printed %d pairs, want >= %d", lines, found)
	}

	// Walkers stay finite: find does not follow the symlinks, du and ls -R finish.
	findOut := sh(t, m.Dir, "timeout 60 find . | wc -l; timeout 60 du -s . >/dev/null; timeout 60 ls -R . >/dev/null; echo ok")
	if !strings.HasSuffix(strings.TrimSpace(findOut), "ok") {
		t.Fatalf("walkers: %s", findOut)
	}

	// Rename and unlink: the listing follows (entry validity is about a second).
	if err := os.Rename(filepath.Join(m.Dir, "photos/edits/wizard-resize.jpg"), filepath.Join(m.Dir, "backup/small.jpg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(m.Dir, "photos/edits/wizard-recompress.jpg")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, err := readSimilar(t, m.Dir, filepath.Join(m.Dir, ".similar/photos/wizard.jpg"))
		if err != nil {
			t.Fatal(err)
		}
		res := map[string]bool{}
		for _, e := range ents {
			res[e.resolved] = true
		}
		if res["backup/small.jpg"] && !res["photos/edits/wizard-resize.jpg"] && !res["photos/edits/wizard-recompress.jpg"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after rename/unlink .similar/photos/wizard.jpg = %v", ents)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Entries live about a second in the kernel's cache (the walk above looked it up).
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(m.Dir, ".similar/photos/edits/wizard-recompress.jpg")); err != nil {
			break
		}
		if i == 30 {
			t.Error("an unlinked file is still in .similar/ after 3 s")
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// .similar/ is read-only.
	if err := os.WriteFile(filepath.Join(m.Dir, ".similar/x"), []byte("x"), 0o644); err == nil {
		t.Error("created a file in .similar/")
	}
	// After a remount the index is loaded, not recomputed, and answers the same.
	m.Remount()
	ents, err := readSimilar(t, m.Dir, filepath.Join(m.Dir, ".similar/photos/shapes.jpg"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("after remount: %v %v", ents, err)
	}
}

// similarMatch is one match of `imgfs similar --json`.
type similarMatch struct {
	Path  string  `json:"path"`
	Score float64 `json:"score"`
}

// similarJSON runs `imgfs similar --json PATH` and returns the matches of its one result.
func similarJSON(t *testing.T, m *Mount, path string) []similarMatch {
	t.Helper()
	out := m.Imgfs(t, "similar", "--json", path)
	var resp struct {
		Results []struct {
			Matches []similarMatch `json:"matches"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Results) != 1 {
		t.Fatalf("imgfs similar --json %s: %v\n%s", path, err, out)
	}
	return resp.Results[0].Matches
}

func keys(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func readNames(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func equalSets(a, b []string) bool {
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}
