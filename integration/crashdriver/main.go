// Command crashdriver is the T39 crash-consistency driver (docs/testing.md, "Crash
// consistency").
//
//	crashdriver write  -root DIR -src DIR -journal FILE [-seed N] [-duration D] [-per-kind K]
//	crashdriver verify -root DIR -journal FILE [-level close|fsync]
//	crashdriver loop   -imgfs BIN -work DIR [-n 200] [-seed N] [-store URL] ...
//
// write runs writers (cp, dd bs=4k, write+fsync, temp+rename, O_TRUNC rewrite, append) under
// DIR and appends (op, path, sha256) to an fsynced journal outside the mount before each
// attempt and after each acknowledged close or fsync. verify checks a tree against a journal.
// loop mounts imgfs, runs write in a subprocess, kills the daemon with SIGKILL at a random
// moment, lazily unmounts, remounts (every second time with the cache wiped), verifies, and
// prints a summary; its exit status is 1 if any iteration failed.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "write":
		os.Exit(cmdWrite(os.Args[2:]))
	case "verify":
		os.Exit(cmdVerify(os.Args[2:]))
	case "loop":
		os.Exit(cmdLoop(os.Args[2:]))
	}
	usage()
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: crashdriver write|verify|loop [flags] (-h for flags)")
	os.Exit(2)
}

func cmdWrite(args []string) int {
	fl := flag.NewFlagSet("write", flag.ExitOnError)
	root := fl.String("root", "", "directory inside the mount to write under")
	src := fl.String("src", "", "source pool directory outside the mount (created if empty)")
	jpath := fl.String("journal", "", "journal file outside the mount")
	seed := fl.Uint64("seed", 1, "random seed")
	dur := fl.Duration("duration", time.Minute, "stop after this long if not killed")
	perKind := fl.Int("per-kind", 1, "writers per kind")
	kinds := fl.String("kinds", strings.Join(writerKinds, ","), "writer kinds, comma-separated")
	saveDir := fl.String("save-versions", "", "save every generated version under DIR/<sha256> (debugging)")
	fl.Parse(args)
	if *root == "" || *src == "" || *jpath == "" {
		fmt.Fprintln(os.Stderr, "write: -root, -src and -journal are required")
		return 2
	}
	pool, err := makeSrcPool(*src)
	if err != nil {
		fmt.Fprintln(os.Stderr, "write:", err)
		return 1
	}
	j, err := openJournal(*jpath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "write:", err)
		return 1
	}
	defer j.Close()
	if err := os.MkdirAll(*root, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "ERR %d mkdir: %v\n", time.Now().UnixNano(), err)
		return 0
	}
	w := &writeRun{root: *root, pool: pool, j: j, seed: *seed, deadline: time.Now().Add(*dur), perKind: *perKind,
		kinds: strings.Split(*kinds, ","), saveDir: *saveDir}
	if *saveDir != "" {
		if err := os.MkdirAll(*saveDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "write:", err)
			return 1
		}
	}
	w.run()
	fmt.Printf("acks close=%d fsync=%d\n", w.acksClose.Load(), w.acksFsync.Load())
	return 0
}

func cmdVerify(args []string) int {
	fl := flag.NewFlagSet("verify", flag.ExitOnError)
	root := fl.String("root", "", "directory inside the mount that write used")
	jpath := fl.String("journal", "", "journal file")
	level := fl.String("level", levelClose, "close (spool kept) or fsync (cache wiped)")
	fl.Parse(args)
	recs, err := readJournal(*jpath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		return 1
	}
	files, probs := scanTreeIfExists(*root)
	st, p2 := checkTree(files, recs, *level)
	probs = append(probs, p2...)
	fmt.Printf("paths=%d present=%d intact-close=%d intact-fsync=%d newer=%d empty=%d problems=%d\n",
		st.Paths, st.Present, st.AckedClose, st.AckedFsync, st.Newer, st.Empty, len(probs))
	for _, p := range probs {
		fmt.Println("problem:", p)
	}
	if len(probs) > 0 {
		return 1
	}
	return 0
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func cmdLoop(args []string) int {
	fl := flag.NewFlagSet("loop", flag.ExitOnError)
	var cfg loopConfig
	var mountArgs stringList
	fl.StringVar(&cfg.imgfs, "imgfs", "imgfs", "imgfs binary")
	fl.StringVar(&cfg.store, "store", "", "store URL (default: WORK/store, a local store)")
	fl.StringVar(&cfg.work, "work", "", "work directory (mount point, caches, journals, logs)")
	fl.IntVar(&cfg.n, "n", 200, "iterations")
	fl.Uint64Var(&cfg.seed, "seed", uint64(time.Now().UnixNano()%1e9), "random seed (printed)")
	fl.DurationVar(&cfg.minRun, "min-run", 300*time.Millisecond, "shortest time the writers run before the kill")
	fl.DurationVar(&cfg.maxRun, "max-run", 2500*time.Millisecond, "longest time the writers run before the kill")
	fl.IntVar(&cfg.wipeEvery, "wipe-every", 2, "wipe the cache (machine loss, fsync level) every Nth iteration; 0 = never")
	fl.Float64Var(&cfg.replayKill, "replay-kill", 0.15, "share of iterations that also kill the remounted daemon during replay")
	fl.IntVar(&cfg.perKind, "per-kind", 1, "writers per kind")
	fl.BoolVar(&cfg.saveVersions, "save-versions", false, "keep every generated version and every bad file under WORK (debugging)")
	fl.StringVar(&cfg.kinds, "kinds", strings.Join(writerKinds, ","), "writer kinds, comma-separated")
	fl.DurationVar(&cfg.mountTimeout, "mount-timeout", 60*time.Second, "how long a mount may take")
	fl.Var(&mountArgs, "mount-arg", "extra argument for imgfs mount (repeatable)")
	var wipeArgs stringList
	fl.Var(&wipeArgs, "wipe-mount-arg", "extra argument for the mount after a cache wipe (repeatable; default --break-lease)")
	fl.BoolVar(&cfg.doInit, "init", true, "run imgfs init --store first")
	fl.IntVar(&cfg.kdfMemoryKiB, "kdf-memory-kib", 65536, "Argon2id memory for imgfs init (IMGFS_KDF_MEMORY_KIB; the floor, so mounts are quick); 0 = imgfs's default")
	fl.BoolVar(&cfg.stopOnFail, "stop-on-fail", false, "stop at the first failed iteration")
	fl.Parse(args)
	cfg.mountArgs = mountArgs
	cfg.wipeArgs = wipeArgs
	if len(wipeArgs) == 0 {
		cfg.wipeArgs = []string{"--break-lease"}
	}
	if cfg.work == "" {
		fmt.Fprintln(os.Stderr, "loop: -work is required")
		return 2
	}
	if cfg.maxRun < cfg.minRun {
		cfg.maxRun = cfg.minRun
	}
	fmt.Printf("crash loop: n=%d seed=%d work=%s store=%q\n", cfg.n, cfg.seed, cfg.work, cfg.store)
	start := time.Now()
	sum, err := runLoop(cfg)
	sum.print()
	fmt.Printf("  elapsed: %v\n", time.Since(start).Round(time.Second))
	if err != nil {
		fmt.Println("crash loop error:", err)
		return 1
	}
	if sum.failed > 0 || len(sum.finalProblems) > 0 {
		fmt.Println("CRASH TEST FAILED")
		return 1
	}
	fmt.Println("CRASH TEST PASSED")
	return 0
}
