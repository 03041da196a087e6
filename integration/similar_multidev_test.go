package integration

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// .similar/ includes photos that arrive from another device (docs/core.md, "Several
// devices"): a merge reports their content to the indexer, so device a lists b's edit of
// its photo without a remount.
func TestSimilarAcrossDevices(t *testing.T) {
	model := similarModel(t)
	need(t, convertBin)
	a := startVault(t, vaultOptions{Env: []string{"IMGFS_MODEL=" + model}, MountArgs: []string{"--refresh", "200ms", "--device", "a"}})
	b := a.device("b")
	src := t.TempDir()
	convert(t, append(similarOriginals["wizard.jpg"], filepath.Join(src, "wizard.jpg"))...)
	convert(t, filepath.Join(src, "wizard.jpg"), "-resize", "50%", filepath.Join(src, "wizard-small.jpg"))
	convert(t, append(similarDistractors["granite.jpg"], filepath.Join(src, "granite.jpg"))...)
	sh(t, "", fmt.Sprintf("cp %s/wizard.jpg %s/granite.jpg %s/", src, src, a.Dir))
	a.Sync()
	sh(t, "", fmt.Sprintf("cp %s/wizard-small.jpg %s/", src, b.Dir))
	b.Sync()
	eventually(t, "b's edit in a's .similar/wizard.jpg", 90*time.Second, func() (bool, string) {
		ents, err := readSimilar(t, a.Dir, filepath.Join(a.Dir, ".similar", "wizard.jpg"))
		if err != nil {
			return false, err.Error()
		}
		for _, e := range ents {
			if e.resolved == "wizard-small.jpg" {
				return true, ""
			}
		}
		return false, fmt.Sprint(ents)
	})
}
