package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRekeyMounted: imgfs rekey with real mounts (docs/cli.md "rekey"). It is refused
// beside a writer mount; a running read-only mount notices it and says to remount in imgfs
// status; the writer's and the reader's caches of the old key are rebuilt at their next
// mount and every file reads back byte-exact through FUSE, as from a fresh cache.
func TestRekeyMounted(t *testing.T) {
	a := startVault(t, vaultOptions{MountArgs: []string{"--device", "a"}})
	files := map[string][]byte{"small": []byte("small file"), "mid": randomBytes(300_000), "big": randomBytes(3<<20 + 5)}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(a.Dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a.Sync()
	reader := a.device("reader", "--read-only", "--refresh", "100ms")
	admin := filepath.Join(a.Root, "cache", "admin")

	_, se, err := a.TryImgfs("rekey", "--content", "--store", a.StoreURL, "--cache", admin)
	var ee *exec.ExitError
	if err == nil || !asExit(err, &ee) || ee.ExitCode() != 7 || !strings.Contains(se, "a (last seen") {
		t.Fatalf("rekey beside a writer mount: %v: %s", err, se)
	}
	a.Umount()
	out := a.Imgfs(t, "rekey", "--content", "--store", a.StoreURL, "--cache", admin)
	if !strings.Contains(out, "3 file content(s) re-encrypted") {
		t.Fatalf("rekey: %s", out)
	}

	eventually(t, "the read-only mount notices the rekey", time.Minute, func() (bool, string) {
		st := reader.Status()
		extra, _ := st["extra"].(map[string]any)
		key, _ := extra["key"].(string)
		return strings.Contains(key, "unmount and mount again"), key
	})
	reader.Umount()

	check := func(m *Mount, what string) {
		t.Helper()
		for name, want := range files {
			got, err := os.ReadFile(filepath.Join(m.Dir, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: %s: %v (%d bytes, want %d)", what, name, err, len(got), len(want))
			}
		}
	}
	a.Mount() // its cache is of the old key: rebuilt
	check(a, "writer remounted after the rekey")
	files["new"] = []byte("written under the new key")
	if err := os.WriteFile(filepath.Join(a.Dir, "new"), files["new"], 0o644); err != nil {
		t.Fatal(err)
	}
	a.Sync()
	a.RemountFresh()
	check(a, "fresh cache after the rekey")
	reader.Mount()
	check(reader, "read-only mount remounted after the rekey")
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	x := uint64(n)*0x9e3779b97f4a7c15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}
