package backend

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzValidName: every accepted name stays inside the store directory when joined to it, has
// no empty, "." or ".." component, and round-trips through filepath.Clean unchanged.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"vault", "c/ab/" + strings.Repeat("ab", 32), "r/00000000000000000001", "../x", "/abs",
		"a//b", "a/", ".tmp/x", "a/./b", "a\\b", "a\x00b", "..", "c/ab/.hidden", "k/ABC-def_1.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidName(name) != nil {
			return
		}
		root := "/store/root"
		p := filepath.Join(root, filepath.FromSlash(name))
		if !strings.HasPrefix(p, root+"/") {
			t.Fatalf("%q escapes the store: %s", name, p)
		}
		if filepath.Clean(name) != name || filepath.IsAbs(name) {
			t.Fatalf("%q is not clean", name)
		}
		for _, c := range strings.Split(name, "/") {
			if c == "" || c == "." || c == ".." || strings.HasPrefix(c, ".") {
				t.Fatalf("%q has component %q", name, c)
			}
		}
		if err := ValidPrefix(name); err != nil {
			t.Fatalf("valid name %q is not a valid prefix: %v", name, err)
		}
	})
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"vault", "c/ab/cd", "r/00000000000000000001", "a.b", "A-Z_0"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", "..", "../a", "a/..", ".a", "a/.b", "a b", "a\\b", "é", strings.Repeat("a", 1025), strings.Repeat("a", 256)} {
		if err := ValidName(bad); err == nil || !IsPermanent(err) {
			t.Errorf("ValidName(%q) = %v, want a permanent error", bad, err)
		}
	}
	for _, ok := range []string{"", "c/", "c/a", "r/0000"} {
		if err := ValidPrefix(ok); err != nil {
			t.Errorf("ValidPrefix(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"/", "../", "a//"} {
		if err := ValidPrefix(bad); err == nil {
			t.Errorf("ValidPrefix(%q) succeeded", bad)
		}
	}
}
