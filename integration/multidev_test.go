package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend/faulty"
	"github.com/imgfs/imgfs/backend/s3/s3test"
)

// Several devices on one vault (docs/core.md, "Several devices"), with real mounts.

// device returns a second mount of m's vault: its own cache, mountpoint and device name.
func (m *Mount) device(name string, extra ...string) *Mount {
	m.t.Helper()
	d := &Mount{t: m.t, Bin: m.Bin, Root: m.Root, StoreURL: m.StoreURL, StoreDir: m.StoreDir, PassFile: m.PassFile,
		env: m.env, Dir: filepath.Join(m.Root, "mnt-"+name), Cache: filepath.Join(m.Root, "cache", "dev-"+name)}
	d.args = append(append(append([]string(nil), m.args...), "--device", name), extra...)
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(d.cleanup)
	d.Mount()
	return d
}

// eventually polls cond every 20 ms until it holds or the deadline passes.
func eventually(t *testing.T, what string, within time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < within {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		last = state
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s (last: %s)", what, within, last)
	return 0
}

func fileIs(path string, want []byte) func() (bool, string) {
	return func() (bool, string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, err.Error()
		}
		return bytes.Equal(b, want), fmt.Sprintf("%d bytes", len(b))
	}
}

// TestLiveRefresh: what one device syncs, the others (writer and read-only) show within
// seconds, through the kernel's caches: new files, overwrites of files already read,
// deletions.
func TestLiveRefresh(t *testing.T) {
	a := startVault(t, vaultOptions{MountArgs: []string{"--refresh", "200ms", "--device", "a"}})
	b := a.device("b")
	c := a.device("c", "--read-only")
	const within = 15 * time.Second

	v1 := []byte("version 1 from a")
	if err := os.WriteFile(filepath.Join(a.Dir, "f"), v1, 0o644); err != nil {
		t.Fatal(err)
	}
	a.Sync()
	for _, m := range []*Mount{b, c} {
		eventually(t, "new file on "+m.Dir, within, fileIs(filepath.Join(m.Dir, "f"), v1))
	}
	// An overwrite of a file the others have read (attributes and pages cached).
	v2 := []byte("version 2 from a, longer than the first")
	if err := os.WriteFile(filepath.Join(a.Dir, "f"), v2, 0o644); err != nil {
		t.Fatal(err)
	}
	a.Sync()
	for _, m := range []*Mount{b, c} {
		eventually(t, "overwrite on "+m.Dir, within, fileIs(filepath.Join(m.Dir, "f"), v2))
	}
	// B writes: A and C see it.
	fromB := []byte("from b")
	if err := os.WriteFile(filepath.Join(b.Dir, "g"), fromB, 0o644); err != nil {
		t.Fatal(err)
	}
	b.Sync()
	for _, m := range []*Mount{a, c} {
		eventually(t, "b's file on "+m.Dir, within, fileIs(filepath.Join(m.Dir, "g"), fromB))
	}
	// A deletes f: gone everywhere.
	if err := os.Remove(filepath.Join(a.Dir, "f")); err != nil {
		t.Fatal(err)
	}
	a.Sync()
	for _, m := range []*Mount{b, c} {
		eventually(t, "delete on "+m.Dir, within, func() (bool, string) {
			_, err := os.Stat(filepath.Join(m.Dir, "f"))
			return errors.Is(err, fs.ErrNotExist), fmt.Sprint(err)
		})
	}
	// All three show the same tree.
	want := listing(t, a.Dir)
	for _, m := range []*Mount{b, c} {
		eventually(t, "same tree on "+m.Dir, within, func() (bool, string) {
			got := listing(t, m.Dir)
			return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprint(got)
		})
	}
	// imgfs status lists the devices from their presence records.
	devs := fmt.Sprint(a.Status()["extra"].(map[string]any)["devices"])
	for _, want := range []string{"a (this device)", "b (last seen", "may hold unsynced work"} {
		if !strings.Contains(devs, want) {
			t.Fatalf("status devices %q lacks %q", devs, want)
		}
	}
	// Sync-to-visible latency over a few files (bench/multidevice.sh measures 50).
	var lat []time.Duration
	for i := 0; i < 5; i++ {
		p := fmt.Sprintf("lat%d", i)
		data := []byte(p)
		if err := os.WriteFile(filepath.Join(a.Dir, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
		a.Sync()
		lat = append(lat, eventually(t, "latency file", within, fileIs(filepath.Join(b.Dir, p), data)))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("sync-to-visible with --refresh 200ms: min %s, median %s, max %s", lat[0], lat[len(lat)/2], lat[len(lat)-1])
}

// listing is every path under dir with its size, sorted.
func listing(t *testing.T, dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir || d.Name() == ".similar" {
			if d != nil && d.IsDir() && d.Name() == ".similar" {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, fmt.Sprintf("%s %d", rel, info.Size()))
		return nil
	})
	sort.Strings(out)
	return out
}

// TestMultiDeviceS3Bench measures, on versitygw behind the recording proxy, what an idle
// mount costs in store requests per hour (the refresh poll) and the time from imgfs sync on
// one device to the file being readable on another (p50, p95 over IMGFS_BENCH_FILES files,
// default 50). A benchmark, not a test: it runs only with IMGFS_BENCH_MULTIDEV=1
// (bench/multidevice.sh). IMGFS_BENCH_IDLE sets the idle period (default 60s),
// IMGFS_BENCH_REFRESH the mounts' --refresh (default 5s).
func TestMultiDeviceS3Bench(t *testing.T) {
	if os.Getenv("IMGFS_BENCH_MULTIDEV") != "1" {
		t.Skip("benchmark: set IMGFS_BENCH_MULTIDEV=1 (bench/multidevice.sh)")
	}
	idle := envDuration("IMGFS_BENCH_IDLE", time.Minute)
	refresh := envDuration("IMGFS_BENCH_REFRESH", 5*time.Second)
	files := 50
	if v, err := strconv.Atoi(os.Getenv("IMGFS_BENCH_FILES")); err == nil && v > 0 {
		files = v
	}
	srv := s3test.StartServer(t)
	proxy, url := qaProxy(t, srv, faulty.ProxyConfig{})
	a := startVault(t, vaultOptions{Store: url, Env: srv.Env(), MountArgs: []string{"--refresh", refresh.String(), "--device", "a"}})
	b := a.device("b")
	a.Sync()
	b.Sync()
	time.Sleep(3 * time.Second) // let start-up work (embedding scans, first commits) finish
	proxy.ResetRequests()
	time.Sleep(idle)
	reqs := proxy.Requests()
	kinds := map[string]int{}
	for _, r := range reqs {
		kinds[strings.Fields(r)[0]]++
	}
	perHour := float64(len(reqs)) / 2 / idle.Hours()
	t.Logf("idle, 2 mounts, --refresh %s, %s: %d requests %v = %.0f requests/hour per mount", refresh, idle, len(reqs), kinds, perHour)

	var lat []time.Duration
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < files; i++ {
		// A random pause first, so syncs do not line up with b's polls (which the previous
		// file's wait ends right after).
		time.Sleep(time.Duration(rnd.Int64N(int64(refresh))))
		p := fmt.Sprintf("bench%03d.bin", i)
		data := []byte(fmt.Sprintf("bench file %d %d", i, time.Now().UnixNano()))
		if err := os.WriteFile(filepath.Join(a.Dir, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
		a.Sync()
		lat = append(lat, eventually(t, "visible on b", 2*refresh+30*time.Second, fileIs(filepath.Join(b.Dir, p), data)))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
	t.Logf("sync on a -> readable on b, %d files, --refresh %s: p50 %s, p95 %s, max %s", files, refresh,
		q(0.50).Round(time.Millisecond), q(0.95).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// TestTwoCachesKill9 is the reproduction with real mounts on one host: device A
// writes and syncs a file, copies a bigger one in (close returned), and is killed with
// kill -9; device B copies a file in and syncs. Then a read-only command on A's cache
// (imgfs ls), A mounted again and synced: from a fresh cache, every file of both devices is
// there, byte for byte.
func TestTwoCachesKill9(t *testing.T) {
	a := startVault(t, vaultOptions{MountArgs: []string{"--device", "a"}})
	small := []byte("small, synced")
	if err := os.WriteFile(filepath.Join(a.Dir, "small"), small, 0o644); err != nil {
		t.Fatal(err)
	}
	a.Sync()
	big := make([]byte, 24<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>13)
	}
	if err := os.WriteFile(filepath.Join(a.Dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	a.Kill9()

	b := a.device("b")
	fromB := make([]byte, 3<<20)
	for i := range fromB {
		fromB[i] = byte(i * 13)
	}
	if err := os.WriteFile(filepath.Join(b.Dir, "from-b"), fromB, 0o644); err != nil {
		t.Fatal(err)
	}
	b.Sync()
	b.Umount()

	// Read-only commands on the crashed device's cache change nothing in it (all but the
	// read cache obj/), with unsynced work and, once that is stored, without.
	roCommands(t, a, true, "big")
	// A writer-side command on it stores that work first.
	if so, se, err := a.TryImgfs("gc", "--store", a.StoreURL, "--cache", a.Cache, "--grace", "0s"); err != nil || !strings.Contains(se, "storing it first") {
		t.Fatalf("imgfs gc on the crashed cache with unsynced work: %v\nstdout %s\nstderr %s", err, so, se)
	}
	a.Mount()
	a.Sync()
	a.Kill9()
	b.Mount()
	if err := os.WriteFile(filepath.Join(b.Dir, "from-b2"), []byte("newer root"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Sync()
	b.Umount()
	roCommands(t, a, false, "from-b2")
	a.Mount()
	a.Sync()
	a.Umount()

	fresh := filepath.Join(a.Root, "export")
	a.Imgfs(t, "export", "--store", a.StoreURL, "--cache", filepath.Join(a.Root, "cache", "fresh"), "/", fresh)
	for name, want := range map[string][]byte{"small": small, "big": big, "from-b": fromB} {
		got, err := os.ReadFile(filepath.Join(fresh, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s from a fresh cache: %v (%d bytes, want %d)", name, err, len(got), len(want))
		}
	}
}

// roCommands runs imgfs ls -R, check and export with --cache on m's crashed cache and
// requires the cache to be byte for byte as before (all but the read cache obj/); the
// listing must show want. work: the cache holds unsynced work (the commands say so); else
// they show the newest root.
func roCommands(t *testing.T, m *Mount, work bool, want string) {
	t.Helper()
	before := cacheState(m.Cache)
	args := []string{"--store", m.StoreURL, "--cache", m.Cache}
	out := filepath.Join(t.TempDir(), "export")
	for _, cmd := range [][]string{
		append([]string{"ls", "-R"}, append(args, "/")...),
		append([]string{"check"}, args...),
		append(append([]string{"export"}, args...), "/", out),
	} {
		so, se, err := m.TryImgfs(cmd...)
		if err != nil || strings.Contains(se, "not in the store yet") != work {
			t.Fatalf("imgfs %s on the crashed cache (unsynced work: %v): %v\nstdout %s\nstderr %s", strings.Join(cmd, " "), work, err, so, se)
		}
		if cmd[0] == "ls" && !strings.Contains(so, want) {
			t.Fatalf("imgfs ls on the crashed cache does not show %s:\n%s", want, so)
		}
		if diff := diffState(before, cacheState(m.Cache)); diff != "" {
			t.Fatalf("imgfs %s changed the crashed cache (unsynced work: %v):\n%s", cmd[0], work, diff)
		}
	}
	if _, err := os.Stat(filepath.Join(out, want)); err != nil {
		t.Fatalf("imgfs export of the crashed cache: %v", err)
	}
}
