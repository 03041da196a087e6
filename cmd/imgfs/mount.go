package main

// imgfs mount / umount / status / sync.
//
// `imgfs mount MOUNTPOINT` (without -f) reads the passphrase, creates a vault on the default
// local store when there is none, then re-executes itself as `imgfs mount -f --ready-fd 3
// --passphrase-file /proc/self/fd/4 ...` in a new session with its output in
// <cache>/mount.log, hands it the passphrase through a pipe (never argv or the environment),
// and waits on the readiness pipe for "ready" or "error <exit code> <message>", after zero or
// more "note <text>" lines that it prints on the terminal (e.g. the near-duplicate index is
// off, and why). It exits 0 once the mount is usable, or with the daemon's error and exit code.
//
// The daemon serves FUSE and a control socket (fs/control). `imgfs umount`, SIGINT and
// SIGTERM flush pending work (core Sync), unmount, sync what arrived meanwhile and close the
// core; a busy mount is reported and keeps serving. A second SIGINT/SIGTERM detaches the
// mount lazily and exits 1.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup/keyring"
	imgfs "github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/fs/control"
	"github.com/imgfs/imgfs/fs/core"
)

// mountEnv is what a mount hook sees; features such as the near-duplicate index attach to a
// mount through registerMountHook from an init() in their own file.
type mountEnv struct {
	Cmd        *cobra.Command
	Mountpoint string
	StoreURL   string
	Store      backend.Store
	Log        *slog.Logger
	// CoreOpts may be changed in BeforeOpen (e.g. OnSealed).
	CoreOpts *core.Options
	// Core, FSOpts and Control are set before AfterOpen; FSOpts may be changed there (Similar)
	// and ops registered on Control.
	Core    *core.FS
	FSOpts  *imgfs.Options
	Control *control.Server

	mu      sync.Mutex
	notices []string
	status  []func() map[string]any
	syncs   []func(ctx context.Context) error
	closers []func() error
}

// Notice is a line for the user of imgfs mount, printed on the terminal once the mount is
// ready (a feature that is off, and the command that turns it on).
func (e *mountEnv) Notice(msg string) {
	e.mu.Lock()
	e.notices = append(e.notices, msg)
	e.mu.Unlock()
}

// AddStatus adds fields to `imgfs status` (printed after the core's, sorted by key).
func (e *mountEnv) AddStatus(fn func() map[string]any) {
	e.mu.Lock()
	e.status = append(e.status, fn)
	e.mu.Unlock()
}

// AddSync adds a wait to `imgfs sync` (and to unmount), run after the core's Sync.
func (e *mountEnv) AddSync(fn func(ctx context.Context) error) {
	e.mu.Lock()
	e.syncs = append(e.syncs, fn)
	e.mu.Unlock()
}

// OnClose runs fn after the unmount, before the core is closed (reverse order of adding).
func (e *mountEnv) OnClose(fn func() error) {
	e.mu.Lock()
	e.closers = append(e.closers, fn)
	e.mu.Unlock()
}

type mountHook struct {
	Name       string
	BeforeOpen func(*mountEnv) error // before core.Open: adjust CoreOpts
	AfterOpen  func(*mountEnv) error // after core.Open, before the FUSE mount
}

var mountHooks []mountHook

// registerMountHook is called from init() functions.
func registerMountHook(h mountHook) { mountHooks = append(mountHooks, h) }

// mountStatus is the answer of the "status" control op.
type mountStatus struct {
	Mountpoint     string         `json:"mountpoint"`
	Store          string         `json:"store"`
	CacheDir       string         `json:"cache_dir"`
	PID            int            `json:"pid"`
	ReadOnly       bool           `json:"read_only"`
	Files          int64          `json:"files"`
	Dirs           int64          `json:"dirs"`
	LogicalBytes   int64          `json:"logical_bytes"`
	StoredBytes    int64          `json:"stored_bytes"`
	ContentObjects int64          `json:"content_objects"`
	DedupRatio     float64        `json:"dedup_ratio"`
	PendingSeals   int64          `json:"pending_seals"`
	PendingUploads int64          `json:"pending_uploads"`
	PendingCommit  bool           `json:"pending_commit"`
	Extra          map[string]any `json:"extra,omitempty"`
}

// umountReply is the answer of the "umount" control op.
type umountReply struct {
	PID      int      `json:"pid"`
	Warnings []string `json:"warnings,omitempty"`
}

var mountFlags struct {
	cache      string
	foreground bool
	readOnly   bool
	breakLease bool
	readyFD    int
	debugFUSE  bool
	cpuProfile string
	spoolLimit string
}

var mountCmd = &cobra.Command{
	Use:   "mount [--store URL] [--cache DIR] [-f] [--read-only] [--spool-limit SIZE] MOUNTPOINT",
	Short: "Mount the vault on an empty directory (returns once the mount is ready)",
	Long: `Mounts the vault of the store on MOUNTPOINT, an existing empty directory. Without -f the
command returns once the mount is ready and a daemon serves it (its log is
<cache>/mount.log); with -f it stays in the foreground until unmounted.

The first mount of the default local store creates a vault (the passphrase is asked twice).
Only one writer may mount a store at a time (a lease object in the store enforces it);
--read-only mounts may sit beside it. Unmount with imgfs umount MOUNTPOINT (or Ctrl-C with -f):
pending work is flushed to the store first.

The passphrase comes from --passphrase-file, $IMGFS_PASSPHRASE_FILE, $IMGFS_PASSPHRASE or a
no-echo prompt. The default cache directory is $XDG_CACHE_HOME/imgfs/<hash of the store URL>
(with "-ro" appended for --read-only mounts).`,
	Example: `  imgfs mount ~/photos
  imgfs mount --store s3:https://s3.example.net/bucket/photos ~/photos
  IMGFS_PASSPHRASE_FILE=~/.imgfs-pass imgfs mount -f ~/photos`,
	Args: exactArgs(1),
	RunE: runMount,
}

func init() {
	f := mountCmd.Flags()
	f.StringVar(&mountFlags.cache, "cache", "", "local state directory (default $XDG_CACHE_HOME/imgfs/<hash of store URL>)")
	f.BoolVarP(&mountFlags.foreground, "foreground", "f", false, "stay in the foreground (logs on stderr)")
	f.BoolVar(&mountFlags.readOnly, "read-only", false, "mount read-only (may run beside a writer mount of the same store)")
	f.BoolVar(&mountFlags.breakLease, "break-lease", false, "no effect: there is no writer lock any more (kept for old scripts)")
	f.IntVar(&mountFlags.readyFD, "ready-fd", 0, "internal: write readiness to this fd")
	f.BoolVar(&mountFlags.debugFUSE, "debug-fuse", false, "log every FUSE request")
	f.StringVar(&mountFlags.cpuProfile, "cpuprofile", "", "write a CPU profile of the daemon to this file (until unmount)")
	f.StringVar(&mountFlags.spoolLimit, "spool-limit", "0", "most local disk the spool of not yet stored writes may use, e.g. 20GiB (0 = the disk's free space); writes past it fail with ENOSPC")
	f.MarkHidden("ready-fd")
	f.MarkHidden("cpuprofile")
	f.MarkHidden("debug-fuse")
	rootCmd.AddCommand(mountCmd)

	umountCmd := &cobra.Command{
		Use:   "umount MOUNTPOINT",
		Short: "Flush pending work to the store and unmount",
		Long: `Asks the mount's daemon to flush pending work (seal, upload, commit), unmount and exit, and
waits until it has. A busy mount (a shell's cwd or an open file inside it) is reported and
stays mounted. A mount whose daemon died is cleared with fusermount3 -u.`,
		Args: exactArgs(1),
		RunE: runUmount,
	}
	rootCmd.AddCommand(umountCmd)

	var statusJSON bool
	statusCmd := &cobra.Command{
		Use:   "status [--json] MOUNTPOINT",
		Short: "Show files, bytes, stored bytes, dedup ratio and pending work of a mount",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st mountStatus
			if err := control.CallContext(cmd.Context(), args[0], "status", nil, &st); err != nil {
				return ctlErr(args[0], err)
			}
			if statusJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	statusCmd.Flags().BoolVar(&statusJSON, "json", false, "print JSON")
	rootCmd.AddCommand(statusCmd)

	var syncQuiet bool
	syncCmd := &cobra.Command{
		Use:   "sync MOUNTPOINT",
		Short: "Wait until nothing is pending: every file sealed, stored and committed",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			start := time.Now()
			var st mountStatus
			if err := control.CallContext(cmd.Context(), args[0], "sync", nil, &st); err != nil {
				return ctlErr(args[0], err)
			}
			if !syncQuiet {
				fmt.Fprintf(cmd.OutOrStdout(), "synced in %.1fs: %d files, %s logical, %s stored, nothing pending\n",
					time.Since(start).Seconds(), st.Files, humanBytes(st.LogicalBytes), humanBytes(st.StoredBytes))
			}
			return nil
		},
	}
	syncCmd.Flags().BoolVarP(&syncQuiet, "quiet", "q", false, "print nothing")
	rootCmd.AddCommand(syncCmd)
}

// ctlErr turns a control-socket error into one line for the user.
func ctlErr(mp string, err error) error {
	var re *control.RemoteError
	if errors.As(err, &re) {
		if strings.Contains(re.Msg, "busy") {
			return withCode(exitBusy, err)
		}
		return err
	}
	// No answer: a daemon that was killed leaves a dead mount (mountstate.go).
	if abs, aerr := filepath.Abs(mp); aerr == nil && !errors.Is(err, context.Canceled) {
		if fstype, ok, _ := fsTypeAt(abs); ok && fstype == "fuse.imgfs" && fuseConnDead(context.Background(), abs) {
			return deadMountErr(mp)
		}
	}
	if errors.Is(err, control.ErrNoDaemon) {
		return fmt.Errorf("%s is not an imgfs mount (no daemon answers on its control socket); mount it with imgfs mount %s", mp, mp)
	}
	return err
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func printStatus(w io.Writer, st mountStatus) {
	yn := map[bool]string{true: "yes", false: "no"}
	rows := [][2]string{
		{"mountpoint", st.Mountpoint},
		{"store", st.Store},
		{"cache", st.CacheDir},
		{"daemon pid", strconv.Itoa(st.PID)},
		{"read-only", yn[st.ReadOnly]},
		{"files", fmt.Sprintf("%d (%d directories)", st.Files, st.Dirs)},
		{"logical bytes", fmt.Sprintf("%d (%s)", st.LogicalBytes, humanBytes(st.LogicalBytes))},
		{"stored bytes", fmt.Sprintf("%d (%s, %d content objects)", st.StoredBytes, humanBytes(st.StoredBytes), st.ContentObjects)},
		{"dedup ratio", fmt.Sprintf("%.2f", st.DedupRatio)},
		{"pending seals", strconv.FormatInt(st.PendingSeals, 10)},
		{"pending uploads", strconv.FormatInt(st.PendingUploads, 10)},
		{"pending commit", yn[st.PendingCommit]},
	}
	keys := make([]string, 0, len(st.Extra))
	for k := range st.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rows = append(rows, [2]string{strings.ReplaceAll(k, "_", " "), fmt.Sprint(st.Extra[k])})
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-16s %s\n", r[0]+":", r[1])
	}
}

// checkMountpoint returns the absolute mountpoint or a one-line error saying what to do.
func checkMountpoint(arg string) (string, error) {
	mp, err := filepath.Abs(arg)
	if err != nil {
		return "", usageErrorf("mountpoint %s: %v", arg, err)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		return "", errors.New("fusermount3 not found: install fuse3 (apt-get install fuse3, or make setup)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "", errors.New("/dev/fuse is missing: load the fuse kernel module (modprobe fuse) or, in a container, pass --device /dev/fuse")
	}
	state, fstype, err := probeMount(context.Background(), mp)
	switch {
	case err != nil:
		return "", err
	case state == deadMount:
		return "", deadMountErr(mp)
	case state == liveMount:
		return "", withCode(exitBusy, fmt.Errorf("%s is already an imgfs mount; unmount it first with imgfs umount %s", mp, mp))
	case state == otherMount:
		return "", fmt.Errorf("%s is already a mount point (%s); pick an empty directory", mp, fstype)
	}
	fi, err := os.Stat(mp)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return "", fmt.Errorf("%s is a dead FUSE mount (transport endpoint is not connected); clear it with fusermount3 -u %s", mp, mp)
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("mountpoint %s does not exist; create it with mkdir -p %s", mp, mp)
	case err != nil:
		return "", fmt.Errorf("mountpoint %s: %v", mp, err)
	case !fi.IsDir():
		return "", fmt.Errorf("mountpoint %s is not a directory", mp)
	}
	d, err := os.Open(mp)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %v", mp, err)
	}
	names, _ := d.Readdirnames(1)
	d.Close()
	if len(names) > 0 {
		return "", fmt.Errorf("mountpoint %s is not empty; imgfs mounts only on an empty directory", mp)
	}
	return mp, nil
}

// resolveCacheDir is --cache, else the default for the store URL ("-ro" for read-only mounts).
func resolveCacheDir(url string) (string, error) {
	if mountFlags.cache != "" {
		return filepath.Abs(mountFlags.cache)
	}
	d, err := cacheDirFor(url)
	if err != nil {
		return "", err
	}
	if mountFlags.readOnly {
		d += "-ro"
	}
	return d, nil
}

// vaultPassphrase returns the passphrase for the store's vault; on the default local store
// without a vault it creates one (asking the passphrase twice).
func vaultPassphrase(ctx context.Context, cmd *cobra.Command, store backend.Store, url string) ([]byte, error) {
	ok, err := keyring.Exists(ctx, store)
	if err != nil {
		return nil, withCode(exitUnreachable, fmt.Errorf("cannot read the store: %w", err))
	}
	if ok {
		return readPassphrase(cmd, false)
	}
	if url != "" {
		return nil, fmt.Errorf("%w at %s: create one with imgfs init --store %s", keyring.ErrNoVault, url, url)
	}
	if mountFlags.readOnly {
		return nil, fmt.Errorf("%w in the default store: run imgfs init, or mount without --read-only", keyring.ErrNoVault)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "imgfs: no vault yet in %s: creating one\n", defaultStorePath())
	pass, err := readPassphrase(cmd, true)
	if err != nil {
		return nil, err
	}
	kdf, err := kdfParams()
	if err != nil {
		clear(pass)
		return nil, err
	}
	keys, err := keyring.Create(ctx, store, pass, keyring.CreateOptions{Mode: keyring.ModeVault, KDF: kdf})
	if err != nil {
		clear(pass)
		return nil, err
	}
	keys.Wipe()
	fmt.Fprintf(cmd.ErrOrStderr(), "imgfs: created a vault in %s\n", defaultStorePath())
	return pass, nil
}

func runMount(cmd *cobra.Command, args []string) error {
	if _, err := parseSize(mountFlags.spoolLimit); err != nil {
		return usageErrorf("--spool-limit %q: %v", mountFlags.spoolLimit, err)
	}
	mp, err := checkMountpoint(args[0])
	if err != nil {
		return err
	}
	if mountFlags.foreground {
		return serveMount(cmd, mp)
	}
	return spawnDaemon(cmd, mp)
}

// spawnDaemon re-executes imgfs with -f in a new session and waits for readiness.
func spawnDaemon(cmd *cobra.Command, mp string) error {
	ctx := cmd.Context()
	url := storeURLFor()
	cache, err := resolveCacheDir(url)
	if err != nil {
		return err
	}
	store, err := openStore(ctx, url)
	if err != nil {
		return err
	}
	pass, err := vaultPassphrase(ctx, cmd, store, url)
	store.Close()
	if err != nil {
		return err
	}
	defer clear(pass)

	if err := os.MkdirAll(cache, 0o700); err != nil {
		return fmt.Errorf("cache directory %s: %w", cache, err)
	}
	logPath := filepath.Join(cache, "mount.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("daemon log %s: %w", logPath, err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	passR, passW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return err
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	cargs := []string{"mount", "-f", "--ready-fd=3", "--passphrase-file=/proc/self/fd/4", "--cache=" + cache}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "foreground", "ready-fd", "passphrase-file", "cache":
			return
		}
		cargs = append(cargs, "--"+f.Name+"="+f.Value.String())
	})
	cargs = append(cargs, "--", mp)
	env, err := absPathEnv(envWithout(os.Environ(), "IMGFS_PASSPHRASE", "IMGFS_PASSPHRASE_FILE"))
	if err != nil {
		readyW.Close()
		passR.Close()
		passW.Close()
		return err
	}
	child := exec.Command(self, cargs...)
	child.Env = env // the daemon runs in "/": paths in it are absolute
	child.Stdin = devnull
	child.Stdout = logf
	child.Stderr = logf
	child.ExtraFiles = []*os.File{readyW, passR}
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	child.Dir = "/"
	fmt.Fprintf(logf, "--- %s imgfs mount %s (pid of the starter %d)\n", time.Now().Format(time.RFC3339), mp, os.Getpid())
	if err := child.Start(); err != nil {
		readyW.Close()
		passR.Close()
		passW.Close()
		return fmt.Errorf("starting the mount daemon: %w", err)
	}
	readyW.Close()
	passR.Close()
	_, werr := passW.Write(pass)
	passW.Close()
	if werr != nil {
		child.Process.Kill()
		child.Wait()
		return fmt.Errorf("handing the passphrase to the mount daemon: %w", werr)
	}

	type result struct {
		line  string
		notes []string
		err   error
	}
	lineCh := make(chan result, 1)
	go func() {
		var r result
		br := bufio.NewReader(readyR)
		for {
			l, err := br.ReadString('\n')
			l = strings.TrimSpace(l)
			if note, ok := strings.CutPrefix(l, "note "); ok && err == nil {
				r.notes = append(r.notes, note)
				continue
			}
			r.line, r.err = l, err
			lineCh <- r
			return
		}
	}()
	var r result
	select {
	case r = <-lineCh:
	case <-ctx.Done():
		child.Process.Signal(syscall.SIGTERM)
		child.Wait()
		return ctx.Err()
	}
	for _, n := range r.notes {
		fmt.Fprintln(cmd.ErrOrStderr(), "imgfs: "+n)
	}
	switch {
	case r.line == "ready":
		child.Process.Release()
		return nil
	case strings.HasPrefix(r.line, "error "):
		child.Wait()
		rest := strings.TrimPrefix(r.line, "error ")
		code, msg, _ := strings.Cut(rest, " ")
		c, cerr := strconv.Atoi(code)
		if cerr != nil {
			c = exitError
		}
		return withCode(c, errors.New(msg))
	default:
		werr := child.Wait()
		return fmt.Errorf("the mount daemon exited before the mount was ready (%v); see %s", werr, logPath)
	}
}

func envWithout(env []string, names ...string) []string {
	out := env[:0:0]
outer:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}

// daemon is a serving mount.
type daemon struct {
	mp    string
	url   string
	cache string
	ro    bool
	log   *slog.Logger
	env   *mountEnv
	core  *core.FS
	m     *imgfs.Mounted
	ctl   *control.Server

	served   chan struct{} // closed when Serve returned
	closed   chan struct{} // closed when the core is closed
	closeErr []string      // warnings of the shutdown, read after closed

	unmountMu sync.Mutex
}

// readiness reports to the starter (when there is one) exactly once: the notices, one
// "note <text>" line each, then "ready" or "error <code> <message>".
type readiness struct {
	f     *os.File
	once  sync.Once
	notes []string
}

func (r *readiness) report(err error) {
	if r == nil || r.f == nil {
		return
	}
	r.once.Do(func() {
		for _, n := range r.notes {
			fmt.Fprintln(r.f, "note "+oneLine(n))
		}
		if err == nil {
			fmt.Fprintln(r.f, "ready")
		} else {
			fmt.Fprintf(r.f, "error %d %s\n", exitCode(err), oneLine(err.Error()))
		}
		r.f.Close()
	})
}

// serveMount is the -f path: it mounts, serves until unmounted, and reports readiness.
func serveMount(cmd *cobra.Command, mp string) (err error) {
	var rd *readiness
	if mountFlags.readyFD > 0 {
		rd = &readiness{f: os.NewFile(uintptr(mountFlags.readyFD), "ready")}
	}
	defer func() { rd.report(err) }() // no-op after a successful report
	// Signals are caught from the start: one that arrives while starting is handled (flush,
	// unmount) as soon as the mount serves, instead of killing a half-started daemon.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	level := slog.LevelInfo
	if mountFlags.debugFUSE {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if mountFlags.cpuProfile != "" {
		pf, err := os.Create(mountFlags.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	// The daemon handles signals itself. While starting, a signal cancels the start
	// (ctx); once serving, it flushes and unmounts.
	ctx, startCancel := context.WithCancel(context.Background())
	defer startCancel()
	startDone := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			startCancel()
		case <-startDone:
		}
	}()
	url := storeURLFor()
	cache, err := resolveCacheDir(url)
	if err != nil {
		return err
	}
	store, err := openStore(ctx, url)
	if err != nil {
		return err
	}
	defer store.Close()
	pass, err := vaultPassphrase(ctx, cmd, store, url)
	if err != nil {
		return err
	}
	keys, err := keyring.Unlock(ctx, store, pass)
	clear(pass)
	if err != nil {
		if errors.Is(err, keyring.ErrWrongPassphrase) {
			return keyring.ErrWrongPassphrase
		}
		return err
	}
	defer keys.Wipe()

	ctl, err := control.Listen(mp, log)
	if err != nil {
		if errors.Is(err, control.ErrInUse) {
			return withCode(exitBusy, fmt.Errorf("%s is already served by a running imgfs daemon", mp))
		}
		return err
	}
	defer ctl.Close(5 * time.Second)

	env := &mountEnv{Cmd: cmd, Mountpoint: mp, StoreURL: url, Store: store, Log: log, Control: ctl}
	spoolLimit, _ := parseSize(mountFlags.spoolLimit) // checked by runMount
	copts := core.Options{CacheDir: cache, ReadOnly: mountFlags.readOnly, Logger: log, BreakLease: mountFlags.breakLease,
		SpoolLimit: spoolLimit}
	env.CoreOpts = &copts
	for _, h := range mountHooks {
		if h.BeforeOpen != nil {
			if err := h.BeforeOpen(env); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		}
	}
	c, err := core.Open(ctx, store, keys, copts)
	if err != nil {
		switch {
		case errors.Is(err, core.ErrLeaseHeld):
			return withCode(exitBusy, fmt.Errorf("the store is in use by another writer mount (lease held); mount with --read-only beside it, or unmount the other one (after a crash on another machine: --break-lease)"))
		case errors.Is(err, syscall.EBUSY):
			return withCode(exitBusy, fmt.Errorf("%v; unmount the other mount or pass a different --cache", err))
		case errors.Is(err, core.ErrRollback):
			return withCode(exitIntegrity, err)
		}
		return err
	}
	d := &daemon{mp: mp, url: url, cache: cache, ro: mountFlags.readOnly, log: log, env: env, core: c, ctl: ctl,
		served: make(chan struct{}), closed: make(chan struct{})}
	env.Core = c
	fsOpts := imgfs.Options{ReadOnly: mountFlags.readOnly, Logger: log, FUSEDebug: mountFlags.debugFUSE}
	env.FSOpts = &fsOpts
	for _, h := range mountHooks {
		if h.AfterOpen != nil {
			if err := h.AfterOpen(env); err != nil {
				d.closeCore()
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		}
	}
	m, err := imgfs.Mount(mp, c, fsOpts)
	if err != nil {
		d.closeCore()
		return err
	}
	d.m = m
	ctl.Handle("status", func(ctx context.Context, _ json.RawMessage) (any, error) { return d.status(), nil })
	ctl.Handle("sync", func(ctx context.Context, _ json.RawMessage) (any, error) {
		if err := d.sync(ctx); err != nil {
			return nil, err
		}
		return d.status(), nil
	})
	ctl.Handle("umount", d.umountOp)
	go ctl.Serve()

	serveErr := make(chan error, 1)
	go func() {
		serveErr <- m.Serve()
		close(d.served)
	}()
	log.Info("imgfs: mounted", "mountpoint", mp, "store", displayStore(url), "cache", cache, "read_only", d.ro, "pid", os.Getpid())
	env.mu.Lock()
	notes := append([]string(nil), env.notices...)
	env.mu.Unlock()
	if rd != nil {
		rd.notes = notes
	} else {
		for _, n := range notes {
			fmt.Fprintln(os.Stderr, "imgfs: "+n)
		}
	}
	rd.report(nil)

	close(startDone)
	forced, unmounting := false, false
	if ctx.Err() != nil { // a signal arrived just as the mount became ready
		unmounting = true
		go d.unmount(context.Background())
	}
	var serr error
wait:
	for {
		select {
		case serr = <-serveErr:
			break wait
		case s := <-sigs:
			if !unmounting {
				unmounting = true
				log.Info("imgfs: signal: flushing and unmounting (send it again to force)", "signal", s.String())
				go func() {
					if err := d.unmount(context.Background()); err != nil {
						log.Error("imgfs: unmount failed; still serving (send the signal again to force)", "err", err)
					}
				}()
				continue
			}
			if forced {
				continue
			}
			forced = true
			log.Warn("imgfs: forced: detaching the mount lazily; pending work stays in the local journal")
			if err := imgfs.LazyUnmount(mp); err != nil {
				log.Error("imgfs: lazy unmount", "err", err)
			}
			m.Abort()
		}
	}
	if serr != nil && !forced {
		log.Error("imgfs: serve", "err", serr)
	}
	d.finish(forced)
	ctl.StopAccepting()
	ctl.Wait(5 * time.Second)
	if forced {
		return errors.New("forced unmount: pending work resumes at the next mount of this cache")
	}
	log.Info("imgfs: unmounted", "mountpoint", mp)
	return nil
}

func displayStore(url string) string {
	if url == "" {
		return defaultStorePath()
	}
	return url
}

func (d *daemon) status() mountStatus {
	s := d.core.Status()
	st := mountStatus{Mountpoint: d.mp, Store: displayStore(d.url), CacheDir: d.cache, PID: os.Getpid(), ReadOnly: d.ro,
		Files: s.Files, Dirs: s.Dirs, LogicalBytes: s.LogicalBytes, StoredBytes: s.StoredBytes, ContentObjects: s.ContentObjects,
		PendingSeals: s.PendingSeals, PendingUploads: s.PendingUploads, PendingCommit: s.PendingCommit}
	if s.StoredBytes > 0 {
		st.DedupRatio = float64(s.LogicalBytes) / float64(s.StoredBytes)
	}
	d.env.mu.Lock()
	fns := append([]func() map[string]any(nil), d.env.status...)
	d.env.mu.Unlock()
	for _, fn := range fns {
		for k, v := range fn() {
			if st.Extra == nil {
				st.Extra = map[string]any{}
			}
			st.Extra[k] = v
		}
	}
	return st
}

// sync waits until nothing is pending (core, then the hooks' waits, then core again).
func (d *daemon) sync(ctx context.Context) error {
	if d.ro {
		return nil
	}
	if err := d.core.Sync(ctx); err != nil {
		return err
	}
	d.env.mu.Lock()
	fns := append([]func(context.Context) error(nil), d.env.syncs...)
	d.env.mu.Unlock()
	for _, fn := range fns {
		if err := fn(ctx); err != nil {
			return err
		}
	}
	if len(fns) == 0 {
		return nil
	}
	// What the hooks wrote while they worked (the near-duplicate index's aux tables) is
	// committed too: nothing is left for a background commit (a no-op when nothing changed).
	return d.core.Sync(ctx)
}

// unmount flushes pending work, then unmounts (busy: error, the mount keeps serving). A
// failed flush does not stop the unmount: the work stays in the local journal.
func (d *daemon) unmount(ctx context.Context) error {
	d.unmountMu.Lock()
	defer d.unmountMu.Unlock()
	select {
	case <-d.served:
		return nil
	default:
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err := d.sync(sctx)
	cancel()
	if err != nil {
		d.log.Warn("imgfs: flush before unmount failed; pending work stays in the local journal", "err", err)
	}
	return imgfs.Unmount(d.mp)
}

func (d *daemon) umountOp(ctx context.Context, _ json.RawMessage) (any, error) {
	if err := d.unmount(ctx); err != nil {
		return nil, err
	}
	select {
	case <-d.closed:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return umountReply{PID: os.Getpid(), Warnings: d.closeErr}, nil
}

// finish runs after Serve returned: hooks' closers, a last sync, core.Close.
func (d *daemon) finish(forced bool) {
	d.env.mu.Lock()
	closers := append([]func() error(nil), d.env.closers...)
	d.env.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil {
			d.closeErr = append(d.closeErr, err.Error())
		}
	}
	if !forced && !d.ro {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := d.core.Sync(ctx); err != nil {
			d.closeErr = append(d.closeErr, "final flush: "+err.Error()+" (pending work resumes at the next mount of this cache)")
		}
		cancel()
	}
	d.closeCore()
	for _, w := range d.closeErr {
		d.log.Warn("imgfs: " + w)
	}
}

func (d *daemon) closeCore() {
	if err := d.core.Close(); err != nil {
		d.closeErr = append(d.closeErr, "close: "+err.Error())
	}
	select {
	case <-d.closed:
	default:
		close(d.closed)
	}
}

func runUmount(cmd *cobra.Command, args []string) error {
	mp, err := filepath.Abs(args[0])
	if err != nil {
		return usageErrorf("%v", err)
	}
	var r umountReply
	err = control.CallContext(cmd.Context(), mp, "umount", nil, &r)
	var re *control.RemoteError
	if err != nil && !errors.As(err, &re) {
		// No answer: the daemon may be gone (killed). What the kernel says decides.
		state, fstype, perr := probeMount(cmd.Context(), mp)
		switch {
		case perr != nil:
			return perr
		case state == notMounted && errors.Is(err, control.ErrNoDaemon):
			return fmt.Errorf("%s is not mounted", mp)
		case state == notMounted:
			return nil // the daemon unmounted and exited before it could answer
		case state == otherMount:
			return fmt.Errorf("%s is not an imgfs mount (%s)", mp, fstype)
		case state == deadMount:
			if err := imgfs.Unmount(mp); err != nil {
				return withCode(exitBusy, err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "imgfs: %s had no running daemon (it was killed?); cleared the mount. Pending work resumes at the next mount.\n", mp)
			return nil
		}
	}
	if err != nil {
		return ctlErr(mp, err)
	}
	for _, w := range r.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "imgfs: warning: "+w)
	}
	// Wait for the daemon to exit, so a following mount finds the cache and lease free.
	deadline := time.Now().Add(30 * time.Second)
	for r.PID > 0 && time.Now().Before(deadline) {
		if err := syscall.Kill(r.PID, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.PID)); err == nil && isZombie(b) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func isZombie(stat []byte) bool {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
