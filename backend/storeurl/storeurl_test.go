package storeurl

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfs/imgfs/backend/retry"
)

func TestDefault(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", "/x/data")
	if got := Default(); got != "/x/data/imgfs/store" {
		t.Fatalf("Default = %s", got)
	}
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got := Default(); got != "/home/u/.local/share/imgfs/store" {
		t.Fatalf("Default = %s", got)
	}
	t.Setenv("XDG_DATA_HOME", "relative/dir") // not absolute: ignored, as the XDG spec says
	if got := Default(); got != "/home/u/.local/share/imgfs/store" {
		t.Fatalf("Default = %s", got)
	}
}

func TestOpenLocal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", dir)
	for url, want := range map[string]string{
		"":                                  filepath.Join(dir, "imgfs", "store"),
		filepath.Join(dir, "p"):             filepath.Join(dir, "p"),
		"file://" + filepath.Join(dir, "f"): filepath.Join(dir, "f"),
	} {
		s, err := Open(ctx, url)
		if err != nil {
			t.Fatalf("Open(%q): %v", url, err)
		}
		ls, ok := s.(*retry.LocalStore) // a local store behind the retry layer
		if !ok || ls.Dir() != want {
			t.Fatalf("Open(%q) = %T %v, want local store in %s", url, s, s, want)
		}
		if _, err := os.Stat(want); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	for _, url := range []string{"gs://bucket", "file://relative", "s3://bucket/x"} {
		if _, err := Open(context.Background(), url); err == nil {
			t.Errorf("Open(%q) succeeded", url)
		} else if strings.Contains(err.Error(), "%!") {
			t.Errorf("bad message %v", err)
		}
	}
	if !IsRemote("s3:http://h:1/b") || IsRemote("/tmp/x") {
		t.Error("IsRemote")
	}
}
