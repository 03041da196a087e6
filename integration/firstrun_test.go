package integration

// A new user's first run (issue "a first run that works every time"): the model found in
// its installed location or the user told, and files that could not be embedded counted
// and listed.

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyBinary copies imgfs to dir, as `install` or a package would place it: no model next
// to it.
func copyBinary(t *testing.T, src, dir string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "imgfs")
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

func statusExtra(t *testing.T, m *Mount) map[string]any {
	t.Helper()
	ex, _ := m.Status()["extra"].(map[string]any)
	return ex
}

// TestModelInstalledLocation: an installed binary without a model mounts, and imgfs mount
// says on the terminal that .similar/ is off, why, and what fixes it; imgfs status says it
// too. With the model in $XDG_DATA_HOME/imgfs/models the next mount has the index on.
func TestModelInstalledLocation(t *testing.T) {
	t.Parallel()
	model := similarModel(t)
	m := startVault(t, vaultOptions{NoMount: true, Env: []string{"IMGFS_MODEL="}})
	bindir := filepath.Join(m.Root, "bin")
	os.MkdirAll(bindir, 0o755)
	m.Bin = copyBinary(t, m.Bin, bindir)
	installed := filepath.Join(m.Root, "data", "imgfs", "models", "mobilenet_v2.imgfsmodel")

	_, se, err := m.TryImgfs(append(m.MountArgs(), m.Dir)...)
	if err != nil {
		t.Fatalf("mount without a model: %v %s", err, se)
	}
	m.mounted = true
	for _, want := range []string{"near-duplicate index disabled", "model file not found", "make setup", installed, "IMGFS_MODEL="} {
		if !strings.Contains(se, want) {
			t.Fatalf("imgfs mount without a model does not say %q on the terminal:\n%s", want, se)
		}
	}
	if st, _ := statusExtra(t, m)["similar_index"].(string); !strings.HasPrefix(st, "off: ") || !strings.Contains(st, "make setup") {
		t.Fatalf("imgfs status: similar_index = %q, want off with the fix", st)
	}
	if out := m.Imgfs(t, "status", m.Dir); !strings.Contains(out, "similar index:   off: ") {
		t.Fatalf("imgfs status (text) does not show the index off:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, ".similar")); err == nil {
		t.Fatal(".similar/ exists with the index off")
	}
	m.Umount()

	b, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(installed), 0o755)
	if err := os.WriteFile(installed, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, se, err = m.TryImgfs(append(m.MountArgs(), m.Dir)...)
	if err != nil {
		t.Fatalf("mount with the installed model: %v %s", err, se)
	}
	m.mounted = true
	if strings.Contains(se, "disabled") {
		t.Fatalf("imgfs mount with the installed model: %s", se)
	}
	if st, _ := statusExtra(t, m)["similar_index"].(string); !strings.HasPrefix(st, "on (model mobilenet_v2@") {
		t.Fatalf("imgfs status with the installed model: similar_index = %q", st)
	}
	if _, err := os.Stat(filepath.Join(m.Dir, ".similar")); err != nil {
		t.Fatalf(".similar/ with the installed model: %v", err)
	}
}

// hugePNG is a valid PNG whose header claims 60000x60000 pixels (a decompression bomb).
func hugePNG() []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		td := append([]byte(typ), data...)
		b.Write(td)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(td))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], 60000)
	binary.BigEndian.PutUint32(ihdr[4:], 60000)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01}) // zlib of one 0 byte
	chunk("IEND", nil)
	return b.Bytes()
}

// TestSimilarFailed: a truncated JPEG, random bytes named .jpg and a PNG claiming
// 60000x60000 are counted by imgfs status and listed with their reason by imgfs similar
// --failed, across a remount; a good photo, a text file and random bytes named .bin are not.
// A removed file leaves the list.
func TestSimilarFailed(t *testing.T) {
	t.Parallel()
	model := similarModel(t)
	need(t, convertBin)
	m := startVault(t, vaultOptions{Env: []string{"IMGFS_MODEL=" + model}})
	src := t.TempDir()
	good := filepath.Join(src, "good.jpg")
	convert(t, "-size", "640x480", "-seed", "7", "plasma:fractal", "-quality", "90", good)
	jpg, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	noise := make([]byte, 20000)
	rand.Read(noise)
	files := map[string][]byte{
		"album/good.jpg":   jpg,
		"album/trunc.jpg":  jpg[:len(jpg)*6/10],
		"album/random.jpg": noise,
		"album/huge.png":   hugePNG(),
		"album/notes.txt":  []byte("not a photo\n"),
		"album/random.bin": noise[:5000],
	}
	os.MkdirAll(filepath.Join(m.Dir, "album"), 0o755)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(m.Dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m.Sync()
	want := map[string]string{
		"album/trunc.jpg":  "corrupt or truncated",
		"album/random.jpg": "not an image the decoder reads",
		"album/huge.png":   "too many pixels: 60000x60000",
	}
	embedded := 1 // good.jpg
	check := func(when string) {
		t.Helper()
		ex := statusExtra(t, m)
		if n, _ := ex["similar_not_embedded"].(float64); int(n) != len(want) {
			t.Fatalf("%s: imgfs status similar_not_embedded = %v, want %d", when, ex["similar_not_embedded"], len(want))
		}
		if n, _ := ex["similar_embeddings"].(float64); int(n) != embedded {
			t.Fatalf("%s: %v embeddings, want %d", when, ex["similar_embeddings"], embedded)
		}
		var got []struct{ Path, Reason string }
		if err := json.Unmarshal([]byte(m.Imgfs(t, "similar", "--failed", "--json", m.Dir)), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: imgfs similar --failed lists %d files, want %d: %+v", when, len(got), len(want), got)
		}
		for _, f := range got {
			rel, _ := filepath.Rel(m.Dir, f.Path)
			if w, ok := want[rel]; !ok || !strings.Contains(f.Reason, w) {
				t.Fatalf("%s: imgfs similar --failed: %s: %q, want a reason with %q", when, f.Path, f.Reason, w)
			}
		}
		text := m.Imgfs(t, "similar", "--failed", m.Dir)
		if strings.Count(text, "\n") != len(want) || !strings.Contains(text, filepath.Join(m.Dir, "album/huge.png")+"\t") {
			t.Fatalf("%s: imgfs similar --failed (text):\n%s", when, text)
		}
	}
	check("after sync")
	m.Remount() // the reasons are kept in the vault, not recomputed
	check("after a remount")
	// imgfs sync also commits what the indexer wrote after the files were committed: a
	// mount with an empty cache after kill -9 (no flush at unmount; a second machine, so
	// --break-lease) loads the new embedding and failure, with nothing left to embed.
	convert(t, "-size", "640x480", "-seed", "8", "plasma:fractal", "-quality", "90", filepath.Join(m.Dir, "album/good2.jpg"))
	if err := os.WriteFile(filepath.Join(m.Dir, "album/trunc2.jpg"), jpg[:len(jpg)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	want["album/trunc2.jpg"] = "corrupt or truncated"
	embedded++
	m.Sync()
	m.Kill9()
	m.Cache = m.newCacheDir()
	m.Imgfs(t, append(m.MountArgs(), "--break-lease", m.Dir)...)
	m.mounted = true
	if b, _ := statusExtra(t, m)["similar_backlog"].(float64); b != 0 {
		t.Fatalf("after imgfs sync, kill -9 and a mount with an empty cache: %v files to embed again", b)
	}
	check("after kill -9 and a mount with an empty cache")
	if err := os.Remove(filepath.Join(m.Dir, "album/trunc.jpg")); err != nil {
		t.Fatal(err)
	}
	delete(want, "album/trunc.jpg")
	check("after removing trunc.jpg")
}
