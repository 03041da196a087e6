package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// writerKinds are the write patterns of T39 (docs/security-tests.md). Each writer goroutine
// owns its own directory and file names, so no two writers touch the same path.
var writerKinds = []string{"cp", "dd", "wfsync", "rename", "trunc", "append"}

// srcFile is one file of the source pool (outside the mount) that cp and dd copy.
type srcFile struct {
	path string
	sha  string
	size int64
}

// srcSizes are the sizes of the source pool: edge sizes around the 4 KiB dd block, the
// 64 KiB segment and the 128 KiB FUSE write, plus some photo-like sizes.
var srcSizes = []int64{0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 131071, 131073,
	300_000, 512 * 1024, 777_777, 1 << 20, 1_500_000, 2 << 20}

// makeSrcPool creates (once) the source pool in dir and returns it with its hashes.
func makeSrcPool(dir string) ([]srcFile, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var pool []srcFile
	for i, size := range srcSizes {
		p := filepath.Join(dir, fmt.Sprintf("src%02d.bin", i))
		data, err := os.ReadFile(p)
		if err != nil || int64(len(data)) != size {
			data = make([]byte, size)
			fillRandom(rand.New(rand.NewPCG(uint64(i), 0x5eed)), data)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return nil, err
			}
		}
		pool = append(pool, srcFile{path: p, sha: shaHex(data), size: size})
	}
	return pool, nil
}

func shaHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

var emptySHA = shaHex(nil)

func fillRandom(r *rand.Rand, b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for k := 0; k < 8 && i+k < len(b); k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
}

// writeRun is one run of all writers against root (a directory inside the mount).
type writeRun struct {
	root     string
	pool     []srcFile
	j        *journal
	seed     uint64
	deadline time.Time
	perKind  int      // writers per kind
	kinds    []string // writer kinds (default writerKinds)
	saveDir  string   // if set, every generated version is saved here under its sha (debugging)

	acksClose atomic.Int64
	acksFsync atomic.Int64
	errMu     sync.Mutex
	errs      []string
}

// fail records the first error of a writer with a timestamp; the crash loop compares it with
// the moment it killed the daemon (an error before the kill is a bug, after it is expected).
func (w *writeRun) fail(name string, err error) {
	line := fmt.Sprintf("ERR %d %s: %v", time.Now().UnixNano(), name, err)
	w.errMu.Lock()
	w.errs = append(w.errs, line)
	w.errMu.Unlock()
	fmt.Fprintln(os.Stderr, line)
}

func (w *writeRun) rel(p string) string {
	r, err := filepath.Rel(w.root, p)
	if err != nil {
		panic(err)
	}
	return r
}

func (w *writeRun) ack(op, path, sha string) error {
	switch op {
	case opClose:
		w.acksClose.Add(1)
	case opFsync:
		w.acksFsync.Add(1)
	}
	return w.j.add(record{Op: op, Path: w.rel(path), SHA: sha})
}

func (w *writeRun) save(sha string, data []byte) {
	if w.saveDir != "" {
		_ = os.WriteFile(filepath.Join(w.saveDir, sha), data, 0o644)
	}
}

func (w *writeRun) attempt(path, sha string, mayBeEmpty bool) error {
	flags := ""
	if mayBeEmpty {
		flags = "t"
	}
	return w.j.add(record{Op: opAttempt, Path: w.rel(path), SHA: sha, Flags: flags})
}

// run starts every writer and waits until all have stopped (first error or deadline).
func (w *writeRun) run() {
	var wg sync.WaitGroup
	kinds := w.kinds
	if len(kinds) == 0 {
		kinds = writerKinds
	}
	for ki, kind := range kinds {
		for n := 0; n < w.perKind; n++ {
			name := fmt.Sprintf("%s-%d", kind, n)
			dir := filepath.Join(w.root, name)
			r := rand.New(rand.NewPCG(w.seed, uint64(ki*100+n)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := os.MkdirAll(dir, 0o755); err != nil {
					w.fail(name, err)
					return
				}
				var err error
				for i := 0; err == nil && time.Now().Before(w.deadline); i++ {
					err = w.step(kind, dir, r, i)
				}
				if err != nil {
					w.fail(name, err)
				}
			}()
		}
	}
	wg.Wait()
}

func (w *writeRun) step(kind, dir string, r *rand.Rand, i int) error {
	switch kind {
	case "cp":
		return w.stepCp(dir, r, i)
	case "dd":
		return w.stepDd(dir, r, i)
	case "wfsync":
		return w.stepWriteFsync(dir, r, i)
	case "rename":
		return w.stepRename(dir, r, i)
	case "trunc":
		return w.stepTrunc(dir, r, i)
	case "append":
		return w.stepAppend(dir, r, i)
	}
	return fmt.Errorf("unknown writer kind %q", kind)
}

// forkMu keeps the in-process writers' files closed while a program starts: a forked child
// holds copies of every open descriptor until its exec closes them, and each of those closes
// is a real close(2) of the file on the mount, which imgfs must make durable. Without the lock
// a half-written version becomes "acknowledged" by the driver's own children. In-process
// writers hold the read lock from open to close; runCmd holds the write lock until exec.
var forkMu sync.RWMutex

func runCmd(name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	forkMu.Lock()
	err := cmd.Start() // returns once the child has exec'd (its inherited descriptors are closed)
	forkMu.Unlock()
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return fmt.Errorf("%s %v: %v: %s", name, args, err, out.Bytes())
	}
	return nil
}

// stepCp: cp from the pool over one of three names; every third copy is followed by
// `sync FILE` (fsync on a fresh descriptor after close).
func (w *writeRun) stepCp(dir string, r *rand.Rand, i int) error {
	src := w.pool[r.IntN(len(w.pool))]
	dst := filepath.Join(dir, fmt.Sprintf("c%d", r.IntN(3)))
	if err := w.attempt(dst, src.sha, true); err != nil {
		return err
	}
	if err := runCmd("cp", src.path, dst); err != nil {
		return err
	}
	if err := w.ack(opClose, dst, src.sha); err != nil {
		return err
	}
	if i%3 == 2 {
		if err := runCmd("sync", dst); err != nil {
			return err
		}
		return w.ack(opFsync, dst, src.sha)
	}
	return nil
}

// stepDd: dd bs=4k from the pool, every second time with conv=fsync.
func (w *writeRun) stepDd(dir string, r *rand.Rand, i int) error {
	src := w.pool[r.IntN(len(w.pool))]
	dst := filepath.Join(dir, fmt.Sprintf("d%d", r.IntN(3)))
	if err := w.attempt(dst, src.sha, true); err != nil {
		return err
	}
	args := []string{"if=" + src.path, "of=" + dst, "bs=4k", "status=none"}
	fsync := i%2 == 1
	if fsync {
		args = append(args, "conv=fsync")
	}
	if err := runCmd("dd", args...); err != nil {
		return err
	}
	if fsync {
		if err := w.ack(opFsync, dst, src.sha); err != nil {
			return err
		}
	}
	return w.ack(opClose, dst, src.sha)
}

// writeChunks writes data to f in random-sized chunks, in order or (shuffled) at offsets.
func writeChunks(f *os.File, data []byte, r *rand.Rand, shuffled bool) error {
	type chunk struct{ off, end int }
	var chunks []chunk
	for off := 0; off < len(data); {
		n := 1 + r.IntN(200*1024)
		end := min(off+n, len(data))
		chunks = append(chunks, chunk{off, end})
		off = end
	}
	if shuffled {
		r.Shuffle(len(chunks), func(a, b int) { chunks[a], chunks[b] = chunks[b], chunks[a] })
		for _, c := range chunks {
			if _, err := f.WriteAt(data[c.off:c.end], int64(c.off)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, c := range chunks {
		if _, err := f.Write(data[c.off:c.end]); err != nil {
			return err
		}
	}
	return nil
}

func randomData(r *rand.Rand, maxSize int) []byte {
	b := make([]byte, r.IntN(maxSize+1))
	fillRandom(r, b)
	return b
}

// stepWriteFsync: create/truncate, write, fsync (fsync ack), close (close ack).
func (w *writeRun) stepWriteFsync(dir string, r *rand.Rand, i int) error {
	forkMu.RLock()
	defer forkMu.RUnlock()
	p := filepath.Join(dir, fmt.Sprintf("w%d", r.IntN(4)))
	data := randomData(r, 768*1024)
	sha := shaHex(data)
	w.save(sha, data)
	if err := w.attempt(p, sha, true); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := writeChunks(f, data, r, false); err != nil {
		f.Close()
		return err
	}
	return w.finish(f, p, sha, true)
}

// stepRename: editor-style save. Write a temp file (fsync it every second time), close,
// rename over the target, then fsync the directory every second time.
func (w *writeRun) stepRename(dir string, r *rand.Rand, i int) error {
	forkMu.RLock()
	defer forkMu.RUnlock()
	target := filepath.Join(dir, fmt.Sprintf("r%d", r.IntN(3)))
	tmp := filepath.Join(dir, fmt.Sprintf(".r-tmp-%d", i))
	data := randomData(r, 768*1024)
	sha := shaHex(data)
	w.save(sha, data)
	durable := i%2 == 0
	if err := w.attempt(tmp, sha, true); err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := writeChunks(f, data, r, false); err != nil {
		f.Close()
		return err
	}
	if err := w.finish(f, tmp, sha, durable); err != nil {
		return err
	}
	if err := w.attempt(target, sha, false); err != nil {
		return err
	}
	// A kill between the rename and its journal record leaves tmp renamed away.
	if err := w.j.add(record{Op: opAttempt, Path: w.rel(tmp), Flags: "r"}); err != nil {
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		return err
	}
	if err := w.ack(opClose, target, sha); err != nil {
		return err
	}
	if err := w.j.add(record{Op: opGone, Path: w.rel(tmp), Flags: "c"}); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("fsync dir: %w", err)
	}
	if err := w.ack(opFsync, target, sha); err != nil {
		return err
	}
	return w.j.add(record{Op: opGone, Path: w.rel(tmp), Flags: "f"})
}

// stepTrunc: O_TRUNC rewrite of an existing file, written in shuffled chunks at offsets
// every second time; every third rewrite is fsynced before close.
func (w *writeRun) stepTrunc(dir string, r *rand.Rand, i int) error {
	forkMu.RLock()
	defer forkMu.RUnlock()
	p := filepath.Join(dir, fmt.Sprintf("t%d", r.IntN(2)))
	data := randomData(r, 768*1024)
	sha := shaHex(data)
	w.save(sha, data)
	if err := w.attempt(p, sha, true); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := writeChunks(f, data, r, i%2 == 1); err != nil {
		f.Close()
		return err
	}
	return w.finish(f, p, sha, i%3 == 2)
}

// appendState keeps the content of the append writer's files (the driver knows each version).
var appendState sync.Map // path -> []byte

// stepAppend: O_APPEND of 1 B..64 KiB to one of two files; every fourth append is fsynced;
// a file over 1 MiB starts again with O_TRUNC.
func (w *writeRun) stepAppend(dir string, r *rand.Rand, i int) error {
	forkMu.RLock()
	defer forkMu.RUnlock()
	p := filepath.Join(dir, fmt.Sprintf("a%d", r.IntN(2)))
	var old []byte
	if v, ok := appendState.Load(p); ok {
		old = v.([]byte)
	}
	flags := os.O_WRONLY | os.O_APPEND | os.O_CREATE
	fresh := old == nil
	if len(old) > 1<<20 {
		flags |= os.O_TRUNC
		old = nil
		fresh = true
	}
	chunk := make([]byte, 1+r.IntN(64*1024))
	fillRandom(r, chunk)
	next := append(append([]byte(nil), old...), chunk...)
	sha := shaHex(next)
	w.save(sha, next)
	if err := w.attempt(p, sha, fresh); err != nil {
		return err
	}
	f, err := os.OpenFile(p, flags, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(chunk); err != nil {
		f.Close()
		return err
	}
	if err := w.finish(f, p, sha, i%4 == 3); err != nil {
		return err
	}
	appendState.Store(p, next)
	return nil
}

// finish fsyncs f (when fsync is set) and acknowledges that, then closes f and acknowledges
// the close: the journal records each acknowledgement only after the call returned.
func (w *writeRun) finish(f *os.File, path, sha string, fsync bool) error {
	if fsync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := w.ack(opFsync, path, sha); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return w.ack(opClose, path, sha)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
