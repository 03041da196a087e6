package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/dedup/leakscan"
	"github.com/imgfs/imgfs/dedup/maint"
	"github.com/imgfs/imgfs/fs/core"
	"github.com/imgfs/imgfs/fs/daemon"
)

// Tests of imgfs rekey through the binary (docs/security-tests.md T25; docs/cli.md "rekey").

func storeSet(t *testing.T, store backend.Store, prefix string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	if err := store.List(context.Background(), prefix, func(i backend.Info) error { out[i.Name] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func unlockKeys(t *testing.T, store backend.Store, pass string) *keyring.Keys {
	t.Helper()
	k, err := keyring.Unlock(context.Background(), store, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// referenced opens the vault with k and a fresh cache and returns what its root references.
func referenced(t *testing.T, e *env, store backend.Store, k *keyring.Keys) map[string]bool {
	t.Helper()
	c, err := core.Open(context.Background(), store, k, core.Options{CacheDir: t.TempDir(), ReadOnly: true, RefreshInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	refs, err := c.ReferencedObjects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return refs
}

// exportSame exports the vault with a fresh cache and compares it with the source tree.
func exportSame(t *testing.T, e *env, pw []string, src string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	e.must(pw, "export", "--store", e.store, "--cache", filepath.Join(t.TempDir(), "cache"), "/", out)
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range ents {
		want, _ := os.ReadFile(filepath.Join(src, de.Name()))
		got, err := os.ReadFile(filepath.Join(out, de.Name()))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after the rekey: %v (%d bytes, want %d)", de.Name(), err, len(got), len(want))
		}
	}
}

// opensUnderOldKey reports the store objects that still open under k's master key: the
// header, key slots (by name: they are content-named, so a survivor keeps its name), roots,
// and metadata objects of every kind imgfs writes.
func opensUnderOldKey(t *testing.T, store backend.Store, k *keyring.Keys, oldSlots map[string]bool) []string {
	t.Helper()
	var hits []string
	for name := range storeSet(t, store, "") {
		b, err := readObject(store, name)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case name == keyring.HeaderName:
			hits = append(hits, name) // the generation-0 header is the old key's
		case strings.HasPrefix(name, keyring.GenerationPrefix):
			// Only the current generation's header may be left (it opens under the new key).
			cur, err := keyring.CurrentGeneration(context.Background(), store)
			if err != nil || name != keyring.GenerationName(cur) {
				hits = append(hits, name)
			}
		case oldSlots[name]:
			hits = append(hits, name)
		case strings.HasPrefix(name, "r/"):
			seq, _ := dedup.ParseRootName(name)
			if _, err := dedup.OpenRoot(k.MetaKey, seq, b); err == nil {
				hits = append(hits, name)
			}
		case strings.HasPrefix(name, "c/"):
		default:
			for _, kind := range []string{"tree", "aux", "presence", "gcstate", "gclock"} {
				if _, err := dedup.OpenMeta(k.MetaKey, kind, dedup.Hash(b), b); err == nil {
					hits = append(hits, name)
				}
			}
		}
	}
	return hits
}

func readObject(store backend.Store, name string) ([]byte, error) {
	rc, err := store.Get(context.Background(), name, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(rc)
	return b.Bytes(), err
}

// TestRekeyT25: files imported, rekey (metadata), then rekey --content. After each: the
// files export unchanged from a fresh cache and through the default cache of the old key
// (rebuilt); the new root references no metadata object of the old key; content objects
// are the old ones (metadata) or all new (--content); after gc --grace 0 nothing left in
// the store opens under the old master key (header, slots, roots, every metadata kind),
// and with --content no old content object is left either.
func TestRekeyT25(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	a := randBytes(1000)
	writeFile(t, filepath.Join(src, "a.bin"), a, 0o644, time.Now())
	writeFile(t, filepath.Join(src, "same-as-a.bin"), a, 0o644, time.Now())
	writeFile(t, filepath.Join(src, "big.bin"), randBytes(2<<20+77), 0o644, time.Now())
	writeFile(t, filepath.Join(src, "empty.bin"), nil, 0o644, time.Now())
	const pass = "correct horse rekey" // long enough for the T10 scan of every output
	e.initVault(pass)
	pw := e.withPass(pass)
	e.must(pw, "import", "--store", e.store, src, "/")
	e.must(pw, "ls", "--store", e.store, "/") // the default cache, under the old key
	store, err := local.Open(e.store)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	leaks := leakscan.New() // every key of every generation, scanned for in all output at the end
	for _, content := range []bool{false, true} {
		k0 := unlockKeys(t, store, pass)
		oldMeta, oldContent, oldSlots := storeSet(t, store, "m/"), storeSet(t, store, "c/"), storeSet(t, store, keyring.SlotPrefix)
		args := []string{"rekey", "--store", e.store}
		if content {
			args = append(args, "--content")
		}
		r := e.must(pw, args...)
		k1 := unlockKeys(t, store, pass)
		for _, k := range []*keyring.Keys{k0, k1} {
			for label, key := range map[string][]byte{"MK": k.MasterKey, "CS": k.ConvergenceSecret, "K_meta": k.MetaKey, "K_hdr": k.HeaderKey, "K_local": k.LocalKey} {
				leaks.AddSecret(label, key)
			}
		}
		if !strings.Contains(r.stdout, "new key generation "+strconv.FormatUint(k1.Generation, 10)) || !strings.Contains(r.stdout, "removed the old key: 1 key slot(s)") {
			t.Fatalf("rekey output: %q", r.stdout)
		}
		if k1.Generation <= k0.Generation || bytes.Equal(k1.MasterKey, k0.MasterKey) || bytes.Equal(k1.ConvergenceSecret, k0.ConvergenceSecret) {
			t.Fatalf("after rekey (content %v): generation %d, master key or convergence secret unchanged", content, k1.Generation)
		}
		if _, err := keyring.Unlock(context.Background(), store, []byte("wrong passphrase")); err == nil {
			t.Fatal("a wrong passphrase unlocks")
		}
		refs := referenced(t, e, store, k1)
		for name := range refs {
			if oldMeta[name] {
				t.Fatalf("T25: the new root references %s, a metadata object of the old key", name)
			}
			if strings.HasPrefix(name, "c/") && oldContent[name] == content {
				t.Fatalf("content object %s: was there before %v, --content %v", name, oldContent[name], content)
			}
		}
		exportSame(t, e, pw, src)
		if r := e.must(pw, "ls", "--store", e.store, "/"); !strings.Contains(r.stdout, "big.bin") {
			t.Fatalf("ls through the old key's cache: %q", r.stdout)
		}
		// The documented cost of a metadata-only rekey: a file written again after it is
		// sealed under the new convergence secret, not deduplicated against the old copy;
		// after --content it is.
		again := filepath.Join(t.TempDir(), "again")
		writeFile(t, filepath.Join(again, "a.bin"), a, 0o644, time.Now())
		n0 := len(storeSet(t, store, "c/"))
		e.must(pw, "import", "--store", e.store, again, "/again-"+strconv.FormatBool(content))
		if grew := len(storeSet(t, store, "c/")) - n0; grew != map[bool]int{false: 1, true: 0}[content] {
			t.Fatalf("importing a.bin again after the rekey (content %v) stored %d new content object(s)", content, grew)
		}
		e.must(pw, "gc", "--store", e.store, "--grace", "0")
		if hits := opensUnderOldKey(t, store, k0, oldSlots); len(hits) > 0 {
			t.Fatalf("T25: after rekey and gc, %d object(s) still open under the old master key: %v", len(hits), hits)
		}
		if content {
			for name := range storeSet(t, store, "c/") {
				if oldContent[name] {
					t.Fatalf("old content object %s left after rekey --content and gc", name)
				}
			}
		}
		if r := e.must(pw, "check", "--store", e.store, "--cache", filepath.Join(t.TempDir(), "c"), "--read-data"); !strings.Contains(r.stdout, "no problems found") {
			t.Fatalf("check after the rekey: %q", r.stdout)
		}
	}
	if hits := leaks.ScanBytes("imgfs command output", e.outputs.Bytes()); len(hits) > 0 {
		t.Fatalf("T10: key material of an old or new key in command output:\n%s", leakscan.Format(hits))
	}
}

// TestRekeyKilledAndResumed: rekey --content is killed (SIGKILL) while it re-encrypts
// content. The vault is still readable under the old key; a rerun resumes with the same new
// key (what was uploaded is found again: fewer uploads than chunks) and finishes.
func TestRekeyKilledAndResumed(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	for i := range 12 {
		writeFile(t, filepath.Join(src, "f"+strconv.Itoa(i)+".bin"), randBytes(3<<20+i), 0o644, time.Now())
	}
	e.initVault("pw")
	pw := e.withPass("pw")
	e.must(pw, "import", "--store", e.store, src, "/")
	store, err := local.Open(e.store)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	before := len(storeSet(t, store, "c/"))

	cmd := exec.Command(imgfsBin, "rekey", "--content", "--store", e.store)
	cmd.Env = append(append([]string{}, e.vars...), pw...)
	cmd.Dir = e.dir
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Kill it once it has uploaded content under the new key (the reservation is written
	// before), with most of the 12 files still to do.
	deadline := time.Now().Add(2 * time.Minute)
	for len(storeSet(t, store, "c/")) < before+2 {
		select {
		case err := <-done:
			t.Fatalf("rekey ended before it was killed: %v\n%s%s", err, so.String(), se.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("rekey uploaded no content in 2 minutes")
		}
		time.Sleep(2 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	e.outputs.Write(so.Bytes())
	e.outputs.Write(se.Bytes())

	if k := unlockKeys(t, store, "pw"); k.Generation != 0 {
		t.Fatalf("generation %d current after a rekey killed before its switch", k.Generation)
	}
	exportSame(t, e, pw, src) // readable under the old key
	staged, err := keyring.Staged(context.Background(), store, []byte("pw"))
	if err != nil || staged == nil {
		t.Fatalf("no reservation left by the killed rekey: %v", err)
	}

	r := e.must(pw, "rekey", "--content", "--store", e.store)
	if !strings.Contains(r.stdout, "resuming an interrupted rekey") {
		t.Fatalf("rerun output: %q", r.stdout)
	}
	m := regexp.MustCompile(`(\d+) chunk\(s\), (\d+) uploaded`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("rerun output: %q", r.stdout)
	}
	chunks, _ := strconv.Atoi(m[1])
	uploaded, _ := strconv.Atoi(m[2])
	if uploaded >= chunks {
		t.Fatalf("the rerun uploaded %d of %d chunks: it did not reuse the killed run's key", uploaded, chunks)
	}
	k := unlockKeys(t, store, "pw")
	if !bytes.Equal(k.MasterKey, staged.MasterKey) || !bytes.Equal(k.ConvergenceSecret, staged.ConvergenceSecret) {
		t.Fatal("the finished rekey did not use the reserved key")
	}
	if hs := storeSet(t, store, keyring.GenerationPrefix); len(hs) != 1 || !hs[keyring.GenerationName(k.Generation)] {
		t.Fatalf("header generations left: %v (current %d)", hs, k.Generation)
	}
	exportSame(t, e, pw, src)
}

// TestRekeyFinishesAfterSwitch: a rekey that died after its switch (new root stored, old
// header, slot, roots and its gc lock still there) is finished by the next imgfs rekey.
func TestRekeyFinishesAfterSwitch(t *testing.T) {
	e := newEnv(t)
	pw, store, k0 := e.importedVault()
	ctx := context.Background()
	next, err := keyring.NewGeneration(k0)
	if err != nil {
		t.Fatal(err)
	}
	if err := maint.TakeLock(ctx, store, k0, "imgfs rekey on elsewhere pid 1", false); err != nil {
		t.Fatal(err)
	}
	_, err = core.Rekey(ctx, store, k0, next, core.RekeyOptions{Switch: func(ctx context.Context, seq uint64, h dedup.Locator) error {
		return keyring.WriteGeneration(ctx, store, k0, next, []byte("pw"), keyring.MinKDF, seq, h)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if k := unlockKeys(t, store, "pw"); k.Generation != 1 {
		t.Fatalf("generation %d after the switch", k.Generation)
	}
	r := e.must(pw, "rekey", "--store", e.store)
	if !strings.Contains(r.stdout, "finishing an interrupted rekey") {
		t.Fatalf("output: %q", r.stdout)
	}
	if _, err := store.Stat(ctx, keyring.HeaderName); err == nil {
		t.Fatal("the old header is left")
	}
	if _, err := store.Stat(ctx, maint.LockName); err == nil {
		t.Fatal("the gc lock is left")
	}
	if hits := opensUnderOldKey(t, store, k0, nil); len(hits) == 0 {
		t.Fatal("before gc the old metadata should still be in the store (the test checks nothing)")
	}
	e.must(pw, "gc", "--store", e.store, "--grace", "0")
	if hits := opensUnderOldKey(t, store, k0, nil); len(hits) > 0 {
		t.Fatalf("after finish and gc, objects open under the old key: %v", hits)
	}
	if r := e.must(pw, "ls", "--store", e.store, "/"); !strings.Contains(r.stdout, "a.bin") {
		t.Fatalf("ls: %q", r.stdout)
	}
}

// TestRekeyRefusesBesideDevice: like gc, rekey refuses (exit 7, naming the device) while
// another device may hold work not in the store, and changes nothing.
func TestRekeyRefusesBesideDevice(t *testing.T) {
	e := newEnv(t)
	pw, inner, keys := e.importedVault()
	store := &rootsDown{Store: inner}
	laptop, err := core.Open(context.Background(), store, keys, core.Options{CacheDir: filepath.Join(e.dir, "laptop-cache"), Device: "laptop", RefreshInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	store.down.Store(true)
	_, h, err := laptop.Create(core.RootIno, "away.bin", 0o644, true)
	if err != nil {
		t.Fatal(err)
	}
	h.WriteAt([]byte("unsynced"), 0)
	h.Release()
	laptop.Close() // the root commit fails: the laptop leaves with unsynced work
	before := listAll(t, e.store)
	r := e.run(pw, "rekey", "--store", e.store)
	if r.code != exitBusy || !strings.Contains(r.stderr, "laptop") || !strings.Contains(r.stderr, "imgfs rekey again") {
		t.Fatalf("rekey beside a device with unsynced work: exit %d (%s)", r.code, r.stderr)
	}
	oneErrorLine(t, r)
	after := listAll(t, e.store)
	noPresence := func(names []string) string { // rekey's own cache writes its presence record
		var out []string
		for _, n := range names {
			if !strings.HasPrefix(n, core.PresencePrefix) {
				out = append(out, n)
			}
		}
		return strings.Join(out, " ")
	}
	if noPresence(before) != noPresence(after) {
		t.Fatalf("the refused rekey changed the store:\nbefore %v\nafter  %v", before, after)
	}
	if k := unlockKeys(t, inner, "pw"); k.Generation != 0 {
		t.Fatal("the refused rekey switched")
	}
}

// TestMountNoticesRekey: the daemon's key watch sees a rekey by another process and says
// what to do in imgfs status.
func TestMountNoticesRekey(t *testing.T) {
	e := newEnv(t)
	pw, store, _ := e.importedVault()
	var logged bytes.Buffer
	w, err := daemon.NewKeyWatch(context.Background(), store, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if w.Check(context.Background()) || strings.Contains(w.Status(), "OLD") {
		t.Fatalf("rekey noticed before any: %s", w.Status())
	}
	e.must(pw, "rekey", "--store", e.store)
	if !w.Check(context.Background()) || !strings.Contains(w.Status(), "unmount and mount again") || !strings.Contains(logged.String(), "rekeyed") {
		t.Fatalf("rekey not noticed: %s / %s", w.Status(), logged.String())
	}
}
