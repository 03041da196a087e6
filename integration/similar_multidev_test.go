package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// .similar/ includes photos that arrive from another device (docs/core.md, "Several
// devices"): a merge reports their content to the indexer, so device a lists b's edit of
// its photo without a remount.
func TestSimilarAcrossDevices(t *testing.T) {
	model := similarModel(t)
	a := startVault(t, vaultOptions{Env: []string{"IMGFS_MODEL=" + model}, MountArgs: []string{"--refresh", "200ms", "--device", "a"}})
	b := a.device("b")
	src := wizardPhotos(t)
	sh(t, "", fmt.Sprintf("cp %s/wizard.jpg %s/granite.jpg %s/", src, src, a.Dir))
	a.Sync()
	sh(t, "", fmt.Sprintf("cp %s/wizard-small.jpg %s/", src, b.Dir))
	b.Sync()
	// Poll with one readlink (readSimilar's readdir and xattr would disagree while the index
	// changes between them), then read the whole match directory.
	eventually(t, "b's edit in a's .similar/wizard.jpg", 90*time.Second, func() (bool, string) {
		target, err := os.Readlink(filepath.Join(a.Dir, ".similar", "wizard.jpg", "wizard-small.jpg"))
		return err == nil, fmt.Sprint(target, err)
	})
	ents, err := readSimilar(t, a.Dir, filepath.Join(a.Dir, ".similar", "wizard.jpg"))
	if err != nil || len(ents) != 1 || ents[0].resolved != "wizard-small.jpg" {
		t.Fatalf(".similar/wizard.jpg = %v, %v", ents, err)
	}
}

// .similar/ on a read-only mount lists pairs across devices (docs/similar.md, "Several
// devices"): a writes a photo, b (a writer without the index, so its photo reaches the
// store with no embedding) writes its variant, and the read-only mount c, mounted before
// either, shows the pair after its refresh merges their roots: it loads a's stored
// embedding and embeds b's photo in memory.
func TestSimilarReadOnlyAcrossDevices(t *testing.T) {
	model := similarModel(t)
	a := startVault(t, vaultOptions{Env: []string{"IMGFS_MODEL=" + model}, MountArgs: []string{"--refresh", "200ms", "--device", "a"}})
	c := a.device("c", "--read-only")
	b := a.device("b", "--no-similar")
	src := wizardPhotos(t)
	sh(t, "", fmt.Sprintf("cp %s/wizard.jpg %s/granite.jpg %s/", src, src, a.Dir))
	a.Sync()
	// a embedded its photos from the plaintext that sealing handed over (docs/similar.md,
	// "Follow a photo"), not by reading them back.
	if n := a.Status()["extra"].(map[string]any)["similar_from_plaintext"]; n != float64(2) {
		t.Fatalf("a: %v photos embedded from the sealing hand-off, want 2", n)
	}
	sh(t, "", fmt.Sprintf("mkdir %s/fromb && cp %s/wizard-small.jpg %s/fromb/", b.Dir, src, b.Dir))
	b.Sync()
	for _, m := range []*Mount{c, a} {
		// Poll with one readlink (readSimilar's readdir and xattr would disagree while the
		// index changes between them), then read the whole match directories.
		eventually(t, "the pair in .similar/wizard.jpg of "+m.Dir, 90*time.Second, func() (bool, string) {
			target, err := os.Readlink(filepath.Join(m.Dir, ".similar", "wizard.jpg", "wizard-small.jpg"))
			return err == nil, fmt.Sprint(target, err)
		})
		ents, err := readSimilar(t, m.Dir, filepath.Join(m.Dir, ".similar", "wizard.jpg"))
		if err != nil || len(ents) != 1 || ents[0].resolved != "fromb/wizard-small.jpg" {
			t.Fatalf("%s: .similar/wizard.jpg = %v, %v", m.Dir, ents, err)
		}
		ents, err = readSimilar(t, m.Dir, filepath.Join(m.Dir, ".similar", "fromb", "wizard-small.jpg"))
		if err != nil || len(ents) != 1 || ents[0].resolved != "wizard.jpg" {
			t.Fatalf("%s: .similar/fromb/wizard-small.jpg = %v, %v", m.Dir, ents, err)
		}
		if ents, err := readSimilar(t, m.Dir, filepath.Join(m.Dir, ".similar", "granite.jpg")); err != nil || len(ents) != 0 {
			t.Fatalf("%s: granite.jpg matches %v, %v", m.Dir, ents, err)
		}
	}
}

// wizardPhotos makes wizard.jpg, its half-size copy wizard-small.jpg and the unrelated
// granite.jpg in a temporary directory.
func wizardPhotos(t *testing.T) string {
	t.Helper()
	need(t, convertBin)
	src := t.TempDir()
	convert(t, append(similarOriginals["wizard.jpg"], filepath.Join(src, "wizard.jpg"))...)
	convert(t, filepath.Join(src, "wizard.jpg"), "-resize", "50%", filepath.Join(src, "wizard-small.jpg"))
	convert(t, append(similarDistractors["granite.jpg"], filepath.Join(src, "granite.jpg"))...)
	return src
}
