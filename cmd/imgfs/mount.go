package main

// imgfs mount / umount / status / sync: the flags and the output. The daemon that serves a
// mount, and the starter that runs it in the background, are fs/daemon.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup/keyring"
	imgfs "github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/fs/control"
	"github.com/imgfs/imgfs/fs/daemon"
	"github.com/imgfs/imgfs/fs/vault"
)

var mountFlags struct {
	cache        string
	foreground   bool
	readOnly     bool
	breakLease   bool
	readyFD      int
	debugFUSE    bool
	cpuProfile   string
	blockProfile string
	spoolLimit   string
	// near-duplicate index
	similarThreshold float64
	noSimilar        bool
	// several devices
	refresh time.Duration
	device  string
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
	f.StringVar(&mountFlags.blockProfile, "blockprofile", "", "write a blocking profile of the daemon to this file (at unmount)")
	f.StringVar(&mountFlags.spoolLimit, "spool-limit", "0", "most local disk the spool of not yet stored writes may use, e.g. 20GiB (0 = the disk's free space); writes past it fail with ENOSPC")
	f.Float64Var(&mountFlags.similarThreshold, "similarity-threshold", 0,
		"cosine similarity at or above which photos are near-duplicates in .similar/ (default: by library size, 0.94 to 0.956, plus verified pairs from a floor of 0.88 to 0.93; docs/similar.md)")
	f.BoolVar(&mountFlags.noSimilar, "no-similar", false, "do not index images or show .similar/")
	f.DurationVar(&mountFlags.refresh, "refresh", 5*time.Second,
		"how often to look for other devices' changes (one HEAD request each; 5s = 720 requests/hour); 0 = never")
	f.StringVar(&mountFlags.device, "device", "", "this device's name in conflict copies and imgfs status (default: the host name)")
	f.MarkHidden("ready-fd")
	f.MarkHidden("cpuprofile")
	f.MarkHidden("blockprofile")
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
			var st daemon.Status
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
			var st daemon.Status
			if err := control.CallContext(cmd.Context(), args[0], "sync", nil, &st); err != nil {
				return ctlErr(args[0], err)
			}
			if !syncQuiet {
				fmt.Fprintf(cmd.OutOrStdout(), "synced in %.1fs: nothing pending (totals: imgfs status)\n", time.Since(start).Seconds())
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

func printStatus(w io.Writer, st daemon.Status) {
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
	spoolLimit, err := parseSize(mountFlags.spoolLimit)
	if err != nil {
		return usageErrorf("--spool-limit %q: %v", mountFlags.spoolLimit, err)
	}
	if th := mountFlags.similarThreshold; !mountFlags.noSimilar && (th < 0 || th > 1) {
		return usageErrorf("--similarity-threshold %v: want a value in (0, 1] (0: by library size)", th)
	}
	mp, err := checkMountpoint(args[0])
	if err != nil {
		return err
	}
	if mountFlags.foreground {
		return serveMount(cmd, mp, spoolLimit)
	}
	return spawnDaemon(cmd, mp)
}

// spawnDaemon reads the passphrase (creating a vault on the default store when there is
// none), then starts the daemon in the background with the same flags and waits until it
// reports (fs/daemon, spawn.go).
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
	args := []string{"mount", "-f", "--ready-fd=" + strconv.Itoa(daemon.ReadyFD),
		"--passphrase-file=/proc/self/fd/" + strconv.Itoa(daemon.PassphraseFD), "--cache=" + cache}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "foreground", "ready-fd", "passphrase-file", "cache":
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	args = append(args, "--", mp)
	env, err := absPathEnv(os.Environ())
	if err != nil {
		return err
	}
	err = daemon.Spawn(ctx, daemon.SpawnOptions{Args: args, Mountpoint: mp, CacheDir: cache, Passphrase: pass, Env: env,
		Notes: cmd.ErrOrStderr()})
	var ee *daemon.ExitError
	if errors.As(err, &ee) {
		return withCode(ee.Code, err)
	}
	return err
}

// serveMount is the -f path: it unlocks the vault and serves the mount until it is
// unmounted, reporting readiness on --ready-fd when the starter gave one.
func serveMount(cmd *cobra.Command, mp string, spoolLimit int64) (err error) {
	var rd *daemon.Readiness
	if mountFlags.readyFD > 0 {
		rd = daemon.NewReadiness(os.NewFile(uintptr(mountFlags.readyFD), "ready"))
	}
	defer func() {
		if err != nil {
			rd.Fail(exitCode(err), err) // a no-op once the mount was ready
		}
	}()
	ctx := cmd.Context()
	url := storeURLFor()
	cache, err := resolveCacheDir(url)
	if err != nil {
		return err
	}
	v, err := vault.Unlock(ctx, vault.Config{URL: url, OpenStore: openStore,
		Passphrase: func(ctx context.Context, store backend.Store) ([]byte, error) {
			return vaultPassphrase(ctx, cmd, store, url)
		}})
	if err != nil {
		return err
	}
	defer v.Close()
	return daemon.Serve(ctx, daemon.Options{
		Vault: v, Mountpoint: mp, StoreName: displayStore(url), CacheDir: cache,
		ReadOnly: mountFlags.readOnly, BreakLease: mountFlags.breakLease, SpoolLimit: spoolLimit,
		Refresh: mountFlags.refresh, Device: mountFlags.device,
		NoSimilar: mountFlags.noSimilar, SimilarThreshold: mountFlags.similarThreshold,
		CheckStore: func(ctx context.Context, store backend.Store) error {
			return requireSafeStore(ctx, store, cmd.ErrOrStderr())
		},
		DebugFUSE: mountFlags.debugFUSE, CPUProfile: mountFlags.cpuProfile,
		BlockProfile: mountFlags.blockProfile,
		Ready:        rd, Stderr: os.Stderr,
	})
}

func displayStore(url string) string {
	if url == "" {
		return defaultStorePath()
	}
	return url
}

func runUmount(cmd *cobra.Command, args []string) error {
	mp, err := filepath.Abs(args[0])
	if err != nil {
		return usageErrorf("%v", err)
	}
	var r daemon.UmountReply
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
	daemon.WaitExit(r.PID, 30*time.Second)
	return nil
}
