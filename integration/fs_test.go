package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgfs/imgfs/dedup/leakscan"
)

// makeSourceTree builds the tree the real-program tests copy: photos (ImageMagick), a
// duplicate, nested directories, an empty file, a 3 MiB binary crossing segment boundaries,
// text, an executable, a private file and a relative symlink; fixed mtimes.
func makeSourceTree(t *testing.T, src string) {
	t.Helper()
	makeImages(t, filepath.Join(src, "photos"), 6, "img")
	mustWrite := func(p string, b []byte, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	dup, err := os.ReadFile(filepath.Join(src, "photos", "img000.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(filepath.Join(src, "photos", "2024", "trip", "copy of img000.jpg"), dup, 0o644)
	big := make([]byte, 3<<20+17)
	rand.New(rand.NewSource(7)).Read(big)
	mustWrite(filepath.Join(src, "data", "big.bin"), big, 0o644)
	mustWrite(filepath.Join(src, "data", "empty"), nil, 0o644)
	mustWrite(filepath.Join(src, "notes", "readme.txt"), []byte(strings.Repeat("imgfs integration test line\n", 300)), 0o644)
	mustWrite(filepath.Join(src, "notes", "run.sh"), []byte("#!/bin/sh\necho hello from imgfs\n"), 0o755)
	mustWrite(filepath.Join(src, "notes", "private.txt"), []byte("only for me\n"), 0o600)
	if err := os.Symlink("../photos/img001.jpg", filepath.Join(src, "notes", "favourite.jpg")); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2021, 6, 1, 12, 0, 0, 0, time.UTC)
	filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 && !fi.IsDir() {
			os.Chtimes(p, old, old)
			old = old.Add(time.Hour)
		}
		return nil
	})
}

// TestRealPrograms runs cp, rsync, tar, mv, an editor-style save, ImageMagick, find, ls and
// stat against a real mount, checks sha256 of everything read back, again after umount +
// mount and from a fresh cache dir (a second machine), and scans the store for leaks.
func TestRealPrograms(t *testing.T) {
	t.Parallel()
	needFUSE(t)
	need(t, "rsync", "tar", "cp", "find", "stat", convertBin)
	src := filepath.Join(t.TempDir(), "src")
	makeSourceTree(t, src)
	want := manifest(t, src)

	m := startVault(t, vaultOptions{MountArgs: []string{"--debug-fuse"}}) // max verbosity: the harness scans its log for keys (T10)
	mnt := m.Dir
	if fi, err := os.Stat(mnt); err != nil || !fi.IsDir() {
		t.Fatalf("mountpoint: %v", err)
	}
	if !isMountpoint(mnt) {
		t.Fatal("imgfs mount returned but nothing is mounted")
	}

	t.Run("cp", func(t *testing.T) {
		sh(t, mnt, "cp -r "+q(src)+" cp && cp -a "+q(src)+" cpa")
		compareTrees(t, "cp -r", want, manifest(t, filepath.Join(mnt, "cp")), false, false)
		compareTrees(t, "cp -a", want, manifest(t, filepath.Join(mnt, "cpa")), true, true)
	})
	t.Run("rsync", func(t *testing.T) {
		sh(t, mnt, "rsync -a "+q(src)+"/ rsync/")
		compareTrees(t, "rsync -a", want, manifest(t, filepath.Join(mnt, "rsync")), true, true)
		// A second run must find nothing to do: sizes, mtimes and modes read back right.
		if out := sh(t, mnt, "rsync -ai "+q(src)+"/ rsync/"); strings.TrimSpace(out) != "" {
			t.Fatalf("second rsync -a transferred again:\n%s", out)
		}
	})
	t.Run("tar", func(t *testing.T) {
		sh(t, mnt, "mkdir tar && tar -C "+q(src)+" -cf - . | tar -C tar -xf -")
		compareTrees(t, "tar x into the mount", want, manifest(t, filepath.Join(mnt, "tar")), true, true)
		out := filepath.Join(t.TempDir(), "out")
		sh(t, mnt, "mkdir "+q(out)+" && tar -C tar -cf - . | tar -C "+q(out)+" -xf -")
		compareTrees(t, "tar c from the mount", want, manifest(t, out), true, true)
	})
	t.Run("mv", func(t *testing.T) {
		sh(t, mnt, `mv cp/photos moved-photos && mv cp/notes/readme.txt cp/notes/private.txt`)
		got := manifest(t, filepath.Join(mnt, "moved-photos"))
		compareTrees(t, "mv dir", prefixed(want, "photos"), got, false, false)
		b, err := os.ReadFile(filepath.Join(mnt, "cp", "notes", "private.txt"))
		if err != nil || !strings.HasPrefix(string(b), "imgfs integration test line") {
			t.Fatalf("mv over an existing file: %v %.40q", err, b)
		}
		if _, err := os.Stat(filepath.Join(mnt, "cp", "notes", "readme.txt")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("mv source still there: %v", err)
		}
		// Across file systems: copy + unlink.
		outside := filepath.Join(t.TempDir(), "outside.bin")
		os.WriteFile(outside, []byte("moved in from outside"), 0o644)
		sh(t, mnt, "mv "+q(outside)+" from-outside.bin")
		if b, _ := os.ReadFile(filepath.Join(mnt, "from-outside.bin")); string(b) != "moved in from outside" {
			t.Fatalf("mv into the mount: %q", b)
		}
	})
	t.Run("editor-save", func(t *testing.T) {
		// vim/gedit style: write a temp file, fsync it, rename it over the original, while
		// another reader still holds the old version open.
		out := sh(t, mnt, `
			mkdir edit && printf 'version 1\n' > edit/doc.txt
			exec 3< edit/doc.txt
			printf 'version 2, longer than the first\n' > edit/.doc.txt.swp
			dd if=/dev/null of=edit/.doc.txt.swp conv=notrunc,fsync status=none
			mv -f edit/.doc.txt.swp edit/doc.txt
			sync edit/doc.txt edit
			cat <&3
			exec 3<&-
			cat edit/doc.txt
			ls -a edit`)
		wantOut := "version 1\nversion 2, longer than the first\n.\n..\ndoc.txt\n"
		if out != wantOut {
			t.Fatalf("editor-style save: got\n%s\nwant\n%s", out, wantOut)
		}
	})
	t.Run("convert", func(t *testing.T) {
		// ImageMagick writes into the mount and reads from it; the bytes equal a run outside.
		local := t.TempDir()
		sh(t, mnt, `mkdir conv
			/usr/bin/convert cpa/photos/img001.jpg -resize 50% -strip conv/small.jpg
			/usr/bin/convert `+q(src)+`/photos/img001.jpg -resize 50% -strip `+q(local)+`/small.jpg
			/usr/bin/convert rsync/photos/img003.png -strip `+q(local)+`/from-mount.jpg
			/usr/bin/convert `+q(src)+`/photos/img003.png -strip `+q(local)+`/from-src.jpg`)
		a := manifest(t, filepath.Join(mnt, "conv"))["small.jpg"]
		l := manifest(t, local)
		if a.Hash == "" || a.Hash != l["small.jpg"].Hash {
			t.Fatalf("convert into the mount: %s, outside %s", a.Hash, l["small.jpg"].Hash)
		}
		if l["from-mount.jpg"].Hash != l["from-src.jpg"].Hash {
			t.Fatal("convert reading from the mount gave other pixels than from the source")
		}
	})
	t.Run("find-ls-stat", func(t *testing.T) {
		nfiles := 0
		for _, e := range want {
			if e.Mode.IsRegular() {
				nfiles++
			}
		}
		out := sh(t, mnt, "find rsync -type f | wc -l")
		if n, _ := strconv.Atoi(strings.TrimSpace(out)); n != nfiles {
			t.Fatalf("find -type f: %d, want %d", n, nfiles)
		}
		out = sh(t, mnt, "find rsync -type l")
		if strings.TrimSpace(out) != "rsync/notes/favourite.jpg" {
			t.Fatalf("find -type l: %q", out)
		}
		ls := sh(t, mnt, "ls -lR . | wc -l")
		if n, _ := strconv.Atoi(strings.TrimSpace(ls)); n < 50 {
			t.Fatalf("ls -lR listed only %d lines", n)
		}
		for _, p := range []string{"data/big.bin", "notes/run.sh", "notes/private.txt", "data/empty", "photos/2024/trip/copy of img000.jpg"} {
			a := sh(t, mnt, "stat -c '%s %a %Y %F' "+q("rsync/"+p))
			b := sh(t, src, "stat -c '%s %a %Y %F' "+q(p))
			if a != b {
				t.Fatalf("stat %s: mount %q, source %q", p, a, b)
			}
		}
		if out := sh(t, mnt, "readlink rsync/notes/favourite.jpg && cat rsync/notes/favourite.jpg | sha256sum"); !strings.Contains(out, "../photos/img001.jpg") ||
			!strings.Contains(out, want["photos/img001.jpg"].Hash) {
			t.Fatalf("symlink through the mount: %s", out)
		}
		if out := sh(t, mnt, "./rsync/notes/run.sh"); out != "hello from imgfs\n" {
			t.Fatalf("executing a script from the mount: %q", out)
		}
	})
	t.Run("posix-bits", func(t *testing.T) {
		out := sh(t, mnt, `mkdir px && cd px
			printf 'hello' > f && printf ', world' >> f && cat f; echo
			truncate -s 3 f && cat f; echo
			truncate -s 100000 f && stat -c %s f
			ln f hard && stat -c %h f && printf 'X' | dd of=hard bs=1 seek=1 conv=notrunc status=none && head -c 3 f; echo
			rm hard && stat -c %h f
			ln -s f sym && readlink sym
			chmod 640 f && stat -c %a f
			touch -d '2020-02-02 02:02:02 UTC' f && stat -c %Y f
			mkdir -p a/b/c && rmdir a/b/c a/b a && ls
			df -P . | tail -1 | awk '{print ($2 > 0) ? "df ok" : "df zero"}'`)
		wantOut := "hello, world\nhel\n100000\n2\nhXl\n1\nf\n640\n1580608922\nf\nsym\ndf ok\n"
		if out != wantOut {
			t.Fatalf("posix bits: got\n%s\nwant\n%s", out, wantOut)
		}
		p := filepath.Join(mnt, "px", "f")
		if err := syscall.Setxattr(p, "user.imgfs.test", []byte("xattr value"), 0); err != nil {
			t.Fatalf("setxattr: %v", err)
		}
		buf := make([]byte, 64)
		n, err := syscall.Getxattr(p, "user.imgfs.test", buf)
		if err != nil || string(buf[:n]) != "xattr value" {
			t.Fatalf("getxattr: %v %q", err, buf[:n])
		}
		if _, err := syscall.Getxattr(p, "user.nosuch", buf); !errors.Is(err, syscall.ENODATA) {
			t.Fatalf("getxattr of a missing name: %v, want ENODATA", err)
		}
		if err := os.Mkdir(filepath.Join(mnt, "px", "f", "x"), 0o755); !errors.Is(err, syscall.ENOTDIR) {
			t.Fatalf("mkdir under a file: %v, want ENOTDIR", err)
		}
		if err := os.Remove(filepath.Join(mnt, "px")); !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
			t.Fatalf("rmdir of a non-empty dir: %v, want ENOTEMPTY", err)
		}
		if _, err := os.Stat(filepath.Join(mnt, "px", "nosuch")); !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("stat of a missing name: %v, want ENOENT", err)
		}
	})

	full := manifest(t, mnt, ".similar")
	t.Run("sync-status", func(t *testing.T) {
		m.Sync()
		st := m.Status()
		if st["pending_seals"].(float64) != 0 || st["pending_uploads"].(float64) != 0 || st["pending_commit"].(bool) {
			t.Fatalf("pending work after imgfs sync: %v", st)
		}
		// Four copies (cp -a, rsync, tar, cp -r) of the same files: stored well below logical.
		if r := st["dedup_ratio"].(float64); r < 2 {
			t.Fatalf("dedup ratio %.2f after four copies of one tree (status %v)", r, st)
		}
		out := m.Imgfs(t, "status", mnt)
		for _, k := range []string{"files:", "logical bytes:", "stored bytes:", "dedup ratio:", "pending seals:", "pending uploads:"} {
			if !strings.Contains(out, k) {
				t.Fatalf("imgfs status lacks %q:\n%s", k, out)
			}
		}
	})
	t.Run("remount", func(t *testing.T) {
		m.Remount()
		compareTrees(t, "after umount + mount", full, manifest(t, mnt, ".similar"), true, true)
	})
	t.Run("second-machine", func(t *testing.T) {
		m.RemountFresh()
		compareTrees(t, "from a fresh cache dir", full, manifest(t, mnt, ".similar"), true, true)
	})
	t.Run("leakscan", func(t *testing.T) {
		if m.StoreDir == "" {
			t.Skip("store is not a local directory")
		}
		s := leakscan.New()
		if err := s.AddTree(src); err != nil {
			t.Fatal(err)
		}
		for p := range full {
			for _, c := range strings.Split(p, "/") {
				if len(c) >= 4 {
					s.AddName(c)
				}
			}
		}
		hits, err := s.ScanDir(m.StoreDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) > 0 {
			t.Fatalf("plaintext found in the store:\n%s", leakscan.Format(hits))
		}
	})
}

// q quotes a path for bash.
func q(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestMountErrors checks the one-line errors of imgfs mount and umount.
func TestMountErrors(t *testing.T) {
	t.Parallel()
	m := startVault(t, vaultOptions{NoMount: true})

	t.Run("not-empty", func(t *testing.T) {
		os.WriteFile(filepath.Join(m.Dir, "stray"), []byte("x"), 0o644)
		defer os.Remove(filepath.Join(m.Dir, "stray"))
		se, err := m.TryMount()
		if err == nil || !strings.Contains(se, "not empty") || strings.Count(strings.TrimSpace(se), "\n") != 0 {
			t.Fatalf("mount on a non-empty dir: %v, stderr %q", err, se)
		}
	})
	t.Run("missing-mountpoint", func(t *testing.T) {
		_, se, err := m.TryImgfs(append(m.MountArgs(), filepath.Join(m.Root, "nosuch"))...)
		if err == nil || !strings.Contains(se, "does not exist") {
			t.Fatalf("mount on a missing dir: %v, stderr %q", err, se)
		}
	})
	t.Run("wrong-passphrase", func(t *testing.T) {
		bad := filepath.Join(m.Root, "bad-pass")
		os.WriteFile(bad, []byte("not the passphrase\n"), 0o600)
		_, se, err := m.TryImgfs(append(append(m.MountArgs(), "--passphrase-file", bad), m.Dir)...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(se, "wrong passphrase") {
			t.Fatalf("wrong passphrase: %v, stderr %q (want exit 3)", err, se)
		}
		if isMountpoint(m.Dir) {
			t.Fatal("mounted with a wrong passphrase")
		}
	})
	t.Run("no-fusermount3", func(t *testing.T) {
		cmd := exec.Command(m.Bin, append(m.MountArgs(), m.Dir)...)
		cmd.Env = append(m.Env(), "PATH=/nonexistent")
		out, err := cmd.CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte("fusermount3 not found")) {
			t.Fatalf("without fusermount3: %v, %q", err, out)
		}
	})
	t.Run("second-writer", func(t *testing.T) {
		m.Mount()
		// Another device (other cache, other mountpoint) on the same store: several writers
		// may mount at once (docs/core.md, "Several devices").
		other := filepath.Join(m.Root, "mnt2")
		os.Mkdir(other, 0o755)
		args := []string{"mount", "--store", m.StoreURL, "--cache", filepath.Join(m.Root, "cache", "other"), other}
		if _, se, err := m.TryImgfs(args...); err != nil {
			t.Fatalf("second writer: %v, stderr %q", err, se)
		}
		if err := os.WriteFile(filepath.Join(other, "second-writer.txt"), []byte("w2"), 0o644); err != nil {
			exec.Command("fusermount3", "-u", "-z", other).Run()
			t.Fatalf("write on the second writer: %v", err)
		}
		if _, se, err := m.TryImgfs("umount", other); err != nil {
			t.Fatalf("umount of the second writer: %v %s", err, se)
		}
		// A read-only mount may sit beside the writer.
		ro := append([]string{"mount", "--read-only", "--store", m.StoreURL, "--cache", filepath.Join(m.Root, "cache", "ro")}, other)
		if _, se, err := m.TryImgfs(ro...); err != nil {
			t.Fatalf("read-only mount beside the writer: %v: %s", err, se)
		}
		defer m.TryImgfs("umount", other)
		if err := os.WriteFile(filepath.Join(other, "x"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("write on a read-only mount: %v, want EROFS", err)
		}
		if _, se, err := m.TryImgfs("umount", other); err != nil {
			t.Fatalf("umount of the read-only mount: %v %s", err, se)
		}
	})
	t.Run("already-mounted", func(t *testing.T) {
		_, se, err := m.TryImgfs(append(m.MountArgs(), m.Dir)...)
		if err == nil || !strings.Contains(se, "already") {
			t.Fatalf("mount twice: %v, stderr %q", err, se)
		}
	})
	t.Run("busy-umount", func(t *testing.T) {
		sleeper := exec.Command("sleep", "60")
		sleeper.Dir = m.Dir // its cwd keeps the mount busy
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		_, se, err := m.TryImgfs("umount", m.Dir)
		sleeper.Process.Kill()
		sleeper.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 || !strings.Contains(se, "busy") {
			t.Fatalf("umount of a busy mount: %v, stderr %q (want exit 7, busy)", err, se)
		}
		if !isMountpoint(m.Dir) {
			t.Fatal("busy mount was unmounted anyway")
		}
		if err := os.WriteFile(filepath.Join(m.Dir, "still-works"), []byte("yes"), 0o644); err != nil {
			t.Fatalf("mount unusable after a refused umount: %v", err)
		}
		m.Umount()
	})
	t.Run("umount-not-mounted", func(t *testing.T) {
		_, se, err := m.TryImgfs("umount", m.Dir)
		if err == nil || !strings.Contains(se, "not mounted") {
			t.Fatalf("umount of a plain dir: %v, %q", err, se)
		}
		_, se, err = m.TryImgfs("status", m.Dir)
		if err == nil || !strings.Contains(se, "not an imgfs mount") {
			t.Fatalf("status of a plain dir: %v, %q", err, se)
		}
	})
}

// TestSignalFlushes: SIGTERM to the daemon flushes pending work to the store and unmounts;
// a fresh cache (another machine) then sees the files.
func TestSignalFlushes(t *testing.T) {
	t.Parallel()
	m := startVault(t, vaultOptions{})
	data := bytes.Repeat([]byte("signal flush "), 100000)
	if err := os.WriteFile(filepath.Join(m.Dir, "a.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(m.Dir, "d"), 0o755)
	os.WriteFile(filepath.Join(m.Dir, "d", "b.txt"), []byte("b"), 0o644)
	pid := m.DaemonPID()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitGone(pid, 60*time.Second)
	if isMountpoint(m.Dir) {
		t.Fatal("still mounted after SIGTERM")
	}
	b, _ := os.ReadFile(m.LogPath())
	if !bytes.Contains(b, []byte("unmounted")) {
		t.Fatalf("daemon log lacks the clean unmount:\n%s", b)
	}
	m.Cache = m.newCacheDir()
	m.mounted = false
	m.Mount()
	got, err := os.ReadFile(filepath.Join(m.Dir, "a.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after SIGTERM, from a fresh cache: %v, %d bytes", err, len(got))
	}
	if b, err := os.ReadFile(filepath.Join(m.Dir, "d", "b.txt")); err != nil || string(b) != "b" {
		t.Fatalf("d/b.txt: %v %q", err, b)
	}
	var st struct{ Files int64 }
	out := m.Imgfs(t, "status", "--json", m.Dir)
	json.Unmarshal([]byte(out), &st)
	if st.Files != 2 {
		t.Fatalf("status files = %d, want 2", st.Files)
	}
}

// TestFirstMountCreatesVault: imgfs mount on the default local store with no vault yet
// creates one (passphrase from IMGFS_PASSPHRASE_FILE), and the next mount needs that
// passphrase.
func TestFirstMountCreatesVault(t *testing.T) {
	t.Parallel()
	m := startVault(t, vaultOptions{DefaultStore: true, NoMount: true})
	if _, err := os.Stat(filepath.Join(m.StoreDir)); err == nil {
		t.Fatal("store exists before the first mount")
	}
	_, se, err := m.TryImgfs(append(m.MountArgs(), m.Dir)...)
	if err != nil {
		t.Fatalf("first mount: %v: %s", err, se)
	}
	m.mounted = true
	if !strings.Contains(se, "created a vault") {
		t.Fatalf("first mount did not say it created a vault: %q", se)
	}
	if err := os.WriteFile(filepath.Join(m.Dir, "hello.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.Umount()
	if _, err := os.Stat(filepath.Join(m.StoreDir)); err != nil {
		t.Fatalf("no store at the default place: %v", err)
	}
	bad := filepath.Join(m.Root, "bad-pass")
	os.WriteFile(bad, []byte("another passphrase\n"), 0o600)
	if _, se, err := m.TryImgfs(append(append(m.MountArgs(), "--passphrase-file", bad), m.Dir)...); err == nil || !strings.Contains(se, "wrong passphrase") {
		t.Fatalf("second mount with another passphrase: %v %q", err, se)
	}
	m.Cache = m.newCacheDir()
	m.Mount()
	if b, err := os.ReadFile(filepath.Join(m.Dir, "hello.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("hello.txt after remount: %v %q", err, b)
	}
}

// TestKill9DeadMount: after kill -9 of the daemon, imgfs mount names the dead mount, imgfs
// umount clears it, and a remount on the same cache replays the journal: a file whose
// close(2) returned is intact.
func TestKill9DeadMount(t *testing.T) {
	t.Parallel()
	m := startVault(t, vaultOptions{})
	data := bytes.Repeat([]byte("acknowledged by close "), 50000)
	if err := os.WriteFile(filepath.Join(m.Dir, "closed.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	pid := m.DaemonPID()
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, 10*time.Second)
	if !isMountpoint(m.Dir) {
		t.Fatal("the dead mount vanished by itself")
	}
	_, se, err := m.TryImgfs(append(m.MountArgs(), m.Dir)...)
	if err == nil || !strings.Contains(se, "dead imgfs mount") {
		t.Fatalf("mount over a dead mount: %v, %q", err, se)
	}
	if _, se, err := m.TryImgfs("status", m.Dir); err == nil || !strings.Contains(se, "dead imgfs mount") {
		t.Fatalf("imgfs status of a dead mount: %v, %q", err, se)
	}
	// A killed daemon's control socket can still accept for a moment (its other threads are
	// exiting) and then reset the connection. The kernel's FUSE connection decides, not that.
	stopImpostor := resettingSocket(t, m.ControlSocket())
	_, se, err = m.TryImgfs(append(m.MountArgs(), m.Dir)...)
	if err == nil || !strings.Contains(se, "dead imgfs mount") {
		t.Fatalf("mount over a dead mount whose control socket resets: %v, %q", err, se)
	}
	if _, se, err := m.TryImgfs("status", m.Dir); err == nil || !strings.Contains(se, "dead imgfs mount") {
		t.Fatalf("imgfs status of a dead mount whose control socket resets: %v, %q", err, se)
	}
	if _, se, err := m.TryImgfs("umount", m.Dir); err != nil {
		t.Fatalf("imgfs umount of a dead mount: %v %s", err, se)
	}
	stopImpostor()
	if isMountpoint(m.Dir) {
		t.Fatal("dead mount still there after imgfs umount")
	}
	m.mounted = false
	m.Mount()
	got, err := os.ReadFile(filepath.Join(m.Dir, "closed.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("close-acknowledged file after kill -9: %v, %d of %d bytes", err, len(got), len(data))
	}
}

// resettingSocket listens on path and closes every connection unanswered, as a daemon that
// is being killed does; the returned func stops it and removes the socket.
func resettingSocket(t *testing.T, path string) func() {
	t.Helper()
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return func() { ln.Close(); <-done; os.Remove(path) }
}
