package embed

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLocateInstalledModel: with no $IMGFS_MODEL and nothing near the binary, the model is
// found in $XDG_DATA_HOME/imgfs/models, else in $XDG_DATA_DIRS; the error lists the places.
func TestLocateInstalledModel(t *testing.T) {
	t.Setenv("IMGFS_MODEL", "")
	home, sys := t.TempDir(), t.TempDir()
	t.Setenv("XDG_DATA_HOME", home)
	t.Setenv("XDG_DATA_DIRS", "relative/ignored:"+sys)
	const name = "locate_test_model"
	_, err := LocateModel(name)
	if !errors.Is(err, ErrNoModel) || !strings.Contains(err.Error(), filepath.Join(home, "imgfs", "models", name+".imgfsmodel")) ||
		!strings.Contains(err.Error(), filepath.Join(sys, "imgfs", "models")) || strings.Contains(err.Error(), "relative/ignored") {
		t.Fatalf("no model anywhere: %v", err)
	}
	put := func(dir string) string {
		p := filepath.Join(dir, "imgfs", "models", name+".imgfsmodel")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	inSys := put(sys)
	if got, err := LocateModel(name); err != nil || got != inSys {
		t.Fatalf("system-wide install: %q %v", got, err)
	}
	inHome := put(home)
	if got, err := LocateModel(name); err != nil || got != inHome {
		t.Fatalf("user install (before the system-wide one): %q %v", got, err)
	}
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", home)
	if dirs := InstalledModelDirs(); dirs[0] != filepath.Join(home, ".local", "share", "imgfs", "models") {
		t.Fatalf("default user dir: %v", dirs)
	}
}
