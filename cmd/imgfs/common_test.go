package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/dedup/maint"
	"github.com/imgfs/imgfs/fs/core"
)

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{errors.New("anything"), exitError},
		{fmt.Errorf("unlock: %w", keyring.ErrWrongPassphrase), exitPassphrase},
		{withCode(exitPassphrase, errNoPassphrase), exitPassphrase},
		{fmt.Errorf("x: %w", keyring.ErrNoVault), exitVault},
		{keyring.ErrVaultExists, exitVault},
		{fmt.Errorf("read: %w", dedup.ErrCorrupt), exitIntegrity},
		{fmt.Errorf("open: %w (%w)", core.ErrRollback, syscall.EIO), exitIntegrity},
		{fmt.Errorf("open: %w (%w)", core.ErrLeaseHeld, syscall.EBUSY), exitBusy},
		{fmt.Errorf("gc: %w", maint.ErrLocked), exitError}, // the gc command maps it with a hint
		{backend.Transient(errors.New("503")), exitUnreachable},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), exitUnreachable},
		{context.Canceled, exitInterrupted},
		{errors.New(`unknown command "frob" for "imgfs"`), exitUsage},
		{errors.New("accepts 1 arg(s), received 2"), exitUsage},
		{usageErrorf("bad"), exitUsage},
		{fmt.Errorf("source: %w", &os.PathError{Op: "lstat", Path: "/x", Err: syscall.ENOENT}), exitError},
		{fmt.Errorf("get: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("refused")}), exitUnreachable},
	} {
		if got := exitCode(c.err); got != c.code {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.code)
		}
	}
	if got := oneLine("a\nb\r\nc\n"); got != "a; b; c" {
		t.Errorf("oneLine: %q", got)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "90m": 90 * time.Minute, "36h": 36 * time.Hour, "7d": 7 * 24 * time.Hour, "1s": time.Second} {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "soon", "-1h", "1.5d", "d"} {
		if _, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) accepted", bad)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "8MiB": 8 << 20, "8M": 8 << 20, "20GiB": 20 << 30,
		"1TB": 1e12, "500KB": 500e3, "3K": 3 << 10, "12B": 12} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %v, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5G", "lots", "9999999TiB", "8 MiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[os.FileMode]string{
		0o644:                               "-rw-r--r--",
		os.ModeDir | 0o755:                  "drwxr-xr-x",
		os.ModeSymlink | 0o777:              "lrwxrwxrwx",
		os.ModeSetuid | 0o755:               "-rwsr-xr-x",
		os.ModeSetgid | 0o640:               "-rw-r-S---",
		os.ModeDir | os.ModeSticky | 0o1777: "drwxrwxrwt",
		os.ModeDir | os.ModeSticky | 0o700:  "drwx-----T",
	} {
		if got := modeString(m); got != want {
			t.Errorf("modeString(%v) = %q, want %q", m, got, want)
		}
	}
}

func TestCacheDirFor(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/cachehome")
	dir := t.TempDir()
	t.Chdir(dir)
	a, _ := cacheDirFor("st")
	b, _ := cacheDirFor(filepath.Join(dir, "st"))
	c, _ := cacheDirFor("file://" + filepath.Join(dir, "st"))
	if a != b || b != c || !strings.HasPrefix(a, "/cachehome/imgfs/") {
		t.Fatalf("one store, several cache dirs: %q %q %q", a, b, c)
	}
	d, _ := cacheDirFor("s3:http://127.0.0.1:9000/bucket/p")
	e, _ := cacheDirFor("s3:http://127.0.0.1:9000/bucket/p/")
	f, _ := cacheDirFor("s3:http://127.0.0.1:9000/bucket/q")
	if d != e || d == f || d == a {
		t.Fatalf("s3 cache dirs: %q %q %q", d, e, f)
	}
}

func TestKDFParams(t *testing.T) {
	t.Setenv("IMGFS_KDF_MEMORY_KIB", "1024")
	p, err := kdfParams()
	if err != nil || p.MemoryKiB != keyring.MinKDF.MemoryKiB || p.Time != keyring.DefaultKDF.Time {
		t.Fatalf("below the floor: %+v %v", p, err)
	}
	t.Setenv("IMGFS_KDF_MEMORY_KIB", "131072")
	if p, _ := kdfParams(); p.MemoryKiB != 131072 {
		t.Fatalf("131072: %+v", p)
	}
	t.Setenv("IMGFS_KDF_MEMORY_KIB", "lots")
	if _, err := kdfParams(); exitCode(err) != exitUsage {
		t.Fatalf("non-number: %v", err)
	}
	os.Unsetenv("IMGFS_KDF_MEMORY_KIB")
	if p, _ := kdfParams(); p != keyring.DefaultKDF {
		t.Fatalf("default: %+v", p)
	}
}

func TestPassphraseFile(t *testing.T) {
	d := t.TempDir()
	for content, want := range map[string]string{"pw\n": "pw", "pw\r\n": "pw", "pw": "pw", "first\nsecond\n": "first", " spaced pw \n": " spaced pw "} {
		p := filepath.Join(d, "f")
		os.WriteFile(p, []byte(content), 0o600)
		got, err := readPassphraseFile(p)
		if err != nil || string(got) != want {
			t.Errorf("%q: got %q, %v", content, got, err)
		}
	}
	p := filepath.Join(d, "empty")
	os.WriteFile(p, []byte("\n"), 0o600)
	if _, err := readPassphraseFile(p); exitCode(err) != exitPassphrase {
		t.Errorf("empty file: %v", err)
	}
	_, err := readPassphraseFile(filepath.Join(d, "missing"))
	if exitCode(err) != exitPassphrase {
		t.Errorf("missing file: %v", err)
	}
}
