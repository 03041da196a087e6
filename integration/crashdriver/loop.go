package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
)

// loopConfig drives the T39 crash loop: mount, write, kill -9, lazy unmount, remount, verify.
type loopConfig struct {
	imgfs        string
	store        string
	work         string
	n            int
	seed         uint64
	minRun       time.Duration
	maxRun       time.Duration
	wipeEvery    int // every wipeEvery-th iteration wipes the cache dir (fsync level); 0 = never
	replayKill   float64
	perKind      int
	kinds        string
	saveVersions bool
	mountTimeout time.Duration
	mountArgs    []string
	wipeArgs     []string // extra mount arguments after a wipe (a new machine), e.g. --break-lease
	doInit       bool
	kdfMemoryKiB int // IMGFS_KDF_MEMORY_KIB for imgfs init (0: imgfs's default)
	stopOnFail   bool
}

// daemon is one `imgfs mount -f` process.
type daemon struct {
	cmd  *exec.Cmd
	done chan error
	log  string
}

type loop struct {
	cfg      loopConfig
	mnt      string
	cache    string
	cacheGen int
	pass     string
	d        *daemon
	mountN   int
	rng      *rand.Rand
	logf     func(format string, args ...any)
}

func (l *loop) env() []string {
	return append(os.Environ(), "IMGFS_PASSPHRASE_FILE="+l.pass)
}

// isMounted reports whether mnt is a mount point, and its fs type (the last, visible mount
// when several are stacked).
func isMounted(mnt string) (bool, string) {
	ms, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) { return i.Mountpoint != mnt, false })
	if err != nil || len(ms) == 0 {
		return false, ""
	}
	return true, ms[len(ms)-1].FSType
}

func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// mount starts `imgfs mount -f` and waits until the kernel shows the FUSE mount.
func (l *loop) mount(extra ...string) (time.Duration, error) {
	l.mountN++
	logPath := filepath.Join(l.cfg.work, "logs", fmt.Sprintf("mount-%04d.log", l.mountN))
	lf, err := os.Create(logPath)
	if err != nil {
		return 0, err
	}
	args := append([]string{"mount", "-f", "--store", l.cfg.store, "--cache", l.cache}, l.cfg.mountArgs...)
	args = append(append(args, extra...), l.mnt)
	cmd := exec.Command(l.cfg.imgfs, args...)
	cmd.Env = l.env()
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return 0, err
	}
	d := &daemon{cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() { d.done <- cmd.Wait(); lf.Close() }()
	l.d = d
	for {
		if ok, typ := isMounted(l.mnt); ok && strings.HasPrefix(typ, "fuse") {
			// The kernel lists the mount once fusermount3 has mounted; a stat answers once
			// the daemon serves requests.
			if _, err := os.Stat(l.mnt); err == nil {
				return time.Since(start), nil
			}
		}
		select {
		case err := <-d.done:
			d.done <- err
			return 0, fmt.Errorf("imgfs mount exited before the mount was ready (%v); log:\n%s", err, tail(logPath, 20))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > l.cfg.mountTimeout {
			return 0, fmt.Errorf("mount not ready after %v; log:\n%s", l.cfg.mountTimeout, tail(logPath, 20))
		}
	}
}

// kill sends SIGKILL to the daemon and waits until it is gone.
func (l *loop) kill() {
	if l.d == nil {
		return
	}
	_ = l.d.cmd.Process.Signal(syscall.SIGKILL)
	err := <-l.d.done
	l.d.done <- err
	l.d = nil
}

func lazyUnmount(mnt string) {
	for i := 0; i < 50; i++ {
		if ok, _ := isMounted(mnt); !ok {
			return
		}
		_ = exec.Command("fusermount3", "-u", "-z", mnt).Run()
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *loop) newCache() error {
	if l.cache != "" {
		if err := os.RemoveAll(l.cache); err != nil {
			return err
		}
	}
	l.cacheGen++
	l.cache = filepath.Join(l.cfg.work, fmt.Sprintf("cache-%04d", l.cacheGen))
	return os.MkdirAll(l.cache, 0o700)
}

func (l *loop) imgfsCmd(timeout time.Duration, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.cfg.imgfs, args...)
	cmd.Env = l.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("imgfs %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// iterResult is one iteration's outcome.
type iterResult struct {
	it         int
	level      string
	run        time.Duration
	mountTime  time.Duration
	replayKill bool
	acksClose  int
	acksFsync  int
	st         verifyStats
	problems   []string
}

type summary struct {
	iters, failed, wiped, replayKills int
	acksClose, acksFsync              int
	st                                verifyStats
	mountTimes                        []time.Duration
	finalFiles                        int
	finalProblems                     []string
}

// cleanupOnSignal kills the daemon and clears the mount when the loop is interrupted
// (SIGINT, or SIGTERM from a test's timeout), so that no dead mount is left behind.
func cleanupOnSignal(l *loop) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-ch
		fmt.Printf("crash loop: %v, cleaning up\n", sig)
		if d := l.d; d != nil {
			_ = d.cmd.Process.Signal(syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
		lazyUnmount(l.mnt)
		os.Exit(1)
	}()
}

func runLoop(cfg loopConfig) (summary, error) {
	var sum summary
	l := &loop{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.seed, 0xc0ffee))}
	l.logf = func(format string, args ...any) {
		fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	for _, d := range []string{"mnt", "logs", "journals", "src"} {
		if err := os.MkdirAll(filepath.Join(cfg.work, d), 0o755); err != nil {
			return sum, err
		}
	}
	l.mnt = filepath.Join(cfg.work, "mnt")
	cleanupOnSignal(l)
	if cfg.store == "" {
		cfg.store = filepath.Join(cfg.work, "store")
		l.cfg.store = cfg.store
	}
	l.pass = filepath.Join(cfg.work, "passphrase")
	if err := os.WriteFile(l.pass, []byte("crash-loop passphrase\n"), 0o600); err != nil {
		return sum, err
	}
	if _, err := makeSrcPool(filepath.Join(cfg.work, "src")); err != nil {
		return sum, err
	}
	if err := l.newCache(); err != nil {
		return sum, err
	}
	defer func() {
		l.kill()
		lazyUnmount(l.mnt)
	}()
	if cfg.doInit {
		if cfg.kdfMemoryKiB > 0 {
			os.Setenv("IMGFS_KDF_MEMORY_KIB", strconv.Itoa(cfg.kdfMemoryKiB))
		}
		if err := l.imgfsCmd(2*time.Minute, "init", "--store", cfg.store); err != nil {
			return sum, err
		}
	}
	if _, err := l.mount(); err != nil {
		return sum, fmt.Errorf("first mount: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return sum, err
	}
	manifests := map[int]map[string]string{}
	for it := 1; it <= cfg.n; it++ {
		res, err := l.iteration(self, it, manifests)
		sum.iters++
		if res.level == levelFsync {
			sum.wiped++
		}
		if res.replayKill {
			sum.replayKills++
		}
		sum.acksClose += res.acksClose
		sum.acksFsync += res.acksFsync
		sum.st.Paths += res.st.Paths
		sum.st.Present += res.st.Present
		sum.st.AckedClose += res.st.AckedClose
		sum.st.AckedFsync += res.st.AckedFsync
		sum.st.Newer += res.st.Newer
		sum.st.Empty += res.st.Empty
		if res.mountTime > 0 {
			sum.mountTimes = append(sum.mountTimes, res.mountTime)
		}
		status := "ok"
		if len(res.problems) > 0 || err != nil {
			sum.failed++
			status = "FAIL"
		}
		l.logf("iter %d %s level=%s run=%v acks close=%d fsync=%d | paths=%d present=%d intact-close=%d intact-fsync=%d newer=%d empty=%d mount=%v replay-kill=%v",
			it, status, res.level, res.run.Round(time.Millisecond), res.acksClose, res.acksFsync,
			res.st.Paths, res.st.Present, res.st.AckedClose, res.st.AckedFsync, res.st.Newer, res.st.Empty,
			res.mountTime.Round(time.Millisecond), res.replayKill)
		for i, p := range res.problems {
			if i == 20 {
				l.logf("  ... %d more problems", len(res.problems)-20)
				break
			}
			l.logf("  problem: %s", p)
		}
		if err != nil {
			// The loop cannot go on (no mount): stop here.
			return sum, fmt.Errorf("iteration %d: %w", it, err)
		}
		if len(res.problems) > 0 && cfg.stopOnFail {
			return sum, fmt.Errorf("iteration %d failed", it)
		}
	}
	// Final check: a clean unmount, then a mount with an empty cache must show every
	// settled iteration exactly as it was verified.
	if err := l.imgfsCmd(5*time.Minute, "umount", l.mnt); err != nil {
		sum.finalProblems = append(sum.finalProblems, err.Error())
		l.kill()
		lazyUnmount(l.mnt)
	}
	if l.d != nil {
		select {
		case <-l.d.done:
		case <-time.After(30 * time.Second):
			sum.finalProblems = append(sum.finalProblems, "daemon still running 30 s after imgfs umount")
			l.kill()
		}
		l.d = nil
	}
	if err := l.newCache(); err != nil {
		return sum, err
	}
	if _, err := l.mount(); err != nil {
		return sum, fmt.Errorf("final mount with a fresh cache: %w", err)
	}
	its := make([]int, 0, len(manifests))
	for it := range manifests {
		its = append(its, it)
	}
	sort.Ints(its)
	for _, it := range its {
		root := filepath.Join(l.mnt, fmt.Sprintf("it%04d", it))
		files, probs := scanTreeIfExists(root)
		sum.finalProblems = append(sum.finalProblems, probs...)
		want := manifests[it]
		for _, p := range sortedKeys(want) {
			sum.finalFiles++
			if got, ok := files[p]; !ok {
				sum.finalProblems = append(sum.finalProblems, fmt.Sprintf("final: it%04d/%s missing", it, p))
			} else if got != want[p] {
				sum.finalProblems = append(sum.finalProblems, fmt.Sprintf("final: it%04d/%s changed", it, p))
			}
		}
		for p := range files {
			if _, ok := want[p]; !ok {
				sum.finalProblems = append(sum.finalProblems, fmt.Sprintf("final: it%04d/%s appeared", it, p))
			}
		}
	}
	if err := l.imgfsCmd(5*time.Minute, "umount", l.mnt); err != nil {
		sum.finalProblems = append(sum.finalProblems, err.Error())
	}
	return sum, nil
}

func scanTreeIfExists(root string) (map[string]string, []string) {
	if _, err := os.Lstat(root); errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	return scanTree(root)
}

func (l *loop) iteration(self string, it int, manifests map[int]map[string]string) (iterResult, error) {
	res := iterResult{it: it, level: levelClose}
	if l.cfg.wipeEvery > 0 && it%l.cfg.wipeEvery == 0 {
		res.level = levelFsync
	}
	name := fmt.Sprintf("it%04d", it)
	root := filepath.Join(l.mnt, name)
	jpath := filepath.Join(l.cfg.work, "journals", name+".log")
	seed := l.cfg.seed*100000 + uint64(it)
	cmd := exec.Command(self, "write", "-root", root, "-src", filepath.Join(l.cfg.work, "src"),
		"-journal", jpath, "-seed", strconv.FormatUint(seed, 10), "-duration", "120s",
		"-per-kind", strconv.Itoa(l.cfg.perKind), "-kinds", l.cfg.kinds)
	if l.cfg.saveVersions {
		cmd.Args = append(cmd.Args, "-save-versions", filepath.Join(l.cfg.work, "versions"))
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	writerDone := make(chan error, 1)
	go func() { writerDone <- cmd.Wait() }()

	res.run = l.cfg.minRun + time.Duration(l.rng.Int64N(int64(l.cfg.maxRun-l.cfg.minRun)+1))
	var killTime time.Time
	select {
	case err := <-writerDone:
		// The writers stopped before the kill: every one of them hit an error.
		res.problems = append(res.problems, fmt.Sprintf("writers stopped before the kill (%v): %s", err, strings.TrimSpace(stderr.String())))
		killTime = time.Now()
		l.kill()
		writerDone <- err
	case <-time.After(res.run):
		killTime = time.Now()
		l.kill()
	}
	select {
	case <-writerDone:
	case <-time.After(60 * time.Second):
		res.problems = append(res.problems, "writers still blocked 60 s after the daemon was killed")
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-writerDone
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		var ns int64
		var rest string
		if n, _ := fmt.Sscanf(line, "ERR %d %s", &ns, &rest); n == 2 && time.Unix(0, ns).Before(killTime) {
			res.problems = append(res.problems, "writer error before the kill: "+line)
		}
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		fmt.Sscanf(sc.Text(), "acks close=%d fsync=%d", &res.acksClose, &res.acksFsync)
	}
	lazyUnmount(l.mnt)
	var extra []string
	if res.level == levelFsync {
		if err := l.newCache(); err != nil {
			return res, err
		}
		extra = l.cfg.wipeArgs
	}
	mt, err := l.mount(extra...)
	if err != nil {
		return res, fmt.Errorf("remount after kill -9: %w", err)
	}
	res.mountTime = mt
	if l.rng.Float64() < l.cfg.replayKill {
		// A second crash while the new daemon replays the journal and resumes uploads.
		res.replayKill = true
		time.Sleep(time.Duration(l.rng.Int64N(int64(300 * time.Millisecond))))
		l.kill()
		lazyUnmount(l.mnt)
		if _, err := l.mount(extra...); err != nil {
			return res, fmt.Errorf("remount after a kill during replay: %w", err)
		}
	}
	recs, err := readJournal(jpath)
	if err != nil {
		return res, err
	}
	files, probs := scanTreeIfExists(root)
	res.problems = append(res.problems, probs...)
	st, probs := checkTree(files, recs, res.level)
	res.st = st
	res.problems = append(res.problems, probs...)
	if len(res.problems) > 0 {
		// Keep every file that failed (and its journal stays in WORK/journals) for analysis.
		bad := filepath.Join(l.cfg.work, "bad", name)
		for p, sum := range files {
			if a, ok := allowedStates(recs, res.level)[p]; ok && !a.shas[sum] {
				_ = os.MkdirAll(filepath.Dir(filepath.Join(bad, p)), 0o755)
				_ = exec.Command("cp", filepath.Join(root, p), filepath.Join(bad, p)).Run()
			}
		}
	}
	if len(res.problems) > 0 {
		res.problems = append(res.problems, "daemon log tail:\n"+tail(l.d.log, 15))
	}
	manifests[it] = files
	if err := l.imgfsCmd(5*time.Minute, "sync", l.mnt); err != nil {
		res.problems = append(res.problems, err.Error())
	}
	return res, nil
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func (s summary) print() {
	fmt.Printf("crash summary: iterations=%d failed=%d wiped-cache=%d kill-during-replay=%d\n",
		s.iters, s.failed, s.wiped, s.replayKills)
	fmt.Printf("  acknowledged by writers: close=%d fsync=%d\n", s.acksClose, s.acksFsync)
	fmt.Printf("  after remount: paths=%d present=%d last-ack-intact(close level)=%d last-ack-intact(fsync)=%d newer-unacked-whole=%d empty-after-unacked-trunc=%d\n",
		s.st.Paths, s.st.Present, s.st.AckedClose, s.st.AckedFsync, s.st.Newer, s.st.Empty)
	fmt.Printf("  remount time after kill -9: p50=%v p95=%v max=%v\n",
		pct(s.mountTimes, 0.5).Round(time.Millisecond), pct(s.mountTimes, 0.95).Round(time.Millisecond), pct(s.mountTimes, 1).Round(time.Millisecond))
	fmt.Printf("  final check with a fresh cache: files=%d problems=%d\n", s.finalFiles, len(s.finalProblems))
	for _, p := range s.finalProblems {
		fmt.Printf("  final problem: %s\n", p)
	}
}
