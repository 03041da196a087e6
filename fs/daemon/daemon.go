// Package daemon is the mount daemon behind imgfs mount: it serves a vault's namespace on a
// mountpoint over FUSE (fs), with the mount's control socket (fs/control) and its
// near-duplicate indexer (fs/similar). cmd/imgfs parses the flags, unlocks the vault and
// passes an Options; spawn.go starts a daemon in the background and waits until it is ready.
//
// `imgfs umount`, SIGINT and SIGTERM flush pending work (core Sync), unmount, sync what
// arrived meanwhile and close the core; a busy mount is reported and keeps serving. A second
// SIGINT/SIGTERM detaches the mount lazily and Serve returns an error (docs/cli.md).
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imgfs/imgfs/backend"
	imgfs "github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/fs/control"
	"github.com/imgfs/imgfs/fs/core"
	"github.com/imgfs/imgfs/fs/similar"
	"github.com/imgfs/imgfs/fs/vault"
)

// Options are what imgfs mount's flags say about a mount.
type Options struct {
	// Vault is unlocked; Serve opens its namespace and closes it again. The caller closes
	// the vault after Serve returns.
	Vault      *vault.Vault
	Mountpoint string // absolute, an empty directory
	StoreName  string // the store, as the log and imgfs status name it
	CacheDir   string
	ReadOnly   bool
	BreakLease bool
	SpoolLimit int64 // bytes; 0 = the disk's free space
	// Refresh is how often to look for other devices' roots; <= 0: never.
	Refresh time.Duration
	Device  string // this device's name ("" = the host name)
	// NoSimilar turns the near-duplicate index off; SimilarThreshold is its threshold
	// (0: by library size).
	NoSimilar        bool
	SimilarThreshold float64
	// CheckStore, when set, runs before a writer opens the namespace (the store probe).
	CheckStore func(context.Context, backend.Store) error
	DebugFUSE  bool   // log every FUSE request
	CPUProfile string // write a CPU profile here until the unmount
	// BlockProfile: write a blocking profile (every blocking event) here at the unmount
	BlockProfile string
	// Ready is told when the mount serves; nil: the notes go to Stderr.
	Ready  *Readiness
	Stderr io.Writer // the log (and the notes when Ready is nil)
}

// Status is the answer of the "status" and "sync" control ops (imgfs status). The sync op
// fills in the pending fields only: the totals cost a pass over every inode, and a sync must
// cost what it stores, not the vault (docs/scale.md).
type Status struct {
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

// UmountReply is the answer of the "umount" control op.
type UmountReply struct {
	PID      int      `json:"pid"`
	Warnings []string `json:"warnings,omitempty"`
}

// WaitExit waits until the process pid (a daemon that answered "umount") has exited or is a
// zombie, at most timeout: then a following mount finds the cache and the lease free.
func WaitExit(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for pid > 0 && time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && isZombie(b) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isZombie reads the state field of /proc/PID/stat (after the command name in parentheses,
// which may itself hold parentheses).
func isZombie(stat []byte) bool {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// msgError reads msg and matches err (errors.Is/As), so the caller's exit codes still apply.
type msgError struct {
	msg string
	err error
}

func (e *msgError) Error() string { return e.msg }
func (e *msgError) Unwrap() error { return e.err }

// daemon is a serving mount.
type daemon struct {
	o    Options
	log  *slog.Logger
	core *core.FS
	m    *imgfs.Mounted
	ctl  *control.Server

	similar      *similar.Indexer // nil when the index is off
	similarState string           // why it is off
	devices      cachedDevices
	keyWatch     *KeyWatch // nil until the core is open
	stopKeyWatch context.CancelFunc

	served   chan struct{} // closed when Serve returned
	closed   chan struct{} // closed when the core is closed
	closeErr []string      // warnings of the shutdown, read after closed

	unmountMu sync.Mutex
}

// Serve mounts, reports readiness and serves until the mount is unmounted. ctx covers the
// start: once the mount serves, SIGINT and SIGTERM (caught from the start, so one that
// arrives while starting is handled as soon as the mount serves, instead of killing a
// half-started daemon) flush and unmount.
func Serve(ctx context.Context, o Options) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}

	level := slog.LevelInfo
	if o.DebugFUSE {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(o.Stderr, &slog.HandlerOptions{Level: level}))
	if o.CPUProfile != "" {
		pf, err := os.Create(o.CPUProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	if o.BlockProfile != "" {
		runtime.SetBlockProfileRate(1)
		defer func() {
			if pf, err := os.Create(o.BlockProfile); err == nil {
				pprof.Lookup("block").WriteTo(pf, 0)
				pf.Close()
			}
		}()
	}
	// While starting, a signal cancels the start (ctx); once serving, it flushes and
	// unmounts.
	ctx, startCancel := context.WithCancel(ctx)
	defer startCancel()
	startDone := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			startCancel()
		case <-startDone:
		}
	}()
	mp := o.Mountpoint
	ctl, err := control.Listen(mp, log)
	if err != nil {
		if errors.Is(err, control.ErrInUse) {
			return &msgError{fmt.Sprintf("%s is already served by a running imgfs daemon", mp), err}
		}
		return err
	}
	defer ctl.Close(5 * time.Second)

	d := &daemon{o: o, log: log, ctl: ctl, served: make(chan struct{}), closed: make(chan struct{})}
	copts := core.Options{CacheDir: o.CacheDir, ReadOnly: o.ReadOnly, Logger: log, BreakLease: o.BreakLease,
		SpoolLimit: o.SpoolLimit, RefreshInterval: o.Refresh, Device: o.Device}
	if o.Refresh <= 0 {
		copts.RefreshInterval = -1
	}
	var notes []string
	if !o.ReadOnly && o.CheckStore != nil {
		if err := o.CheckStore(ctx, o.Vault.Store); err != nil {
			return fmt.Errorf("store probe: %w", err)
		}
	}
	if err := d.prepareSimilar(&copts, &notes); err != nil {
		return fmt.Errorf("similar: %w", err)
	}
	if err := o.Vault.Open(ctx, copts); err != nil {
		switch {
		case errors.Is(err, core.ErrLeaseHeld):
			return &msgError{"the store is in use by another writer mount (lease held); mount with --read-only beside it, or unmount the other one (after a crash on another machine: --break-lease)", err}
		case errors.Is(err, syscall.EBUSY):
			return &msgError{fmt.Sprintf("%v; unmount the other mount or pass a different --cache", err), err}
		}
		return err
	}
	d.core = o.Vault.FS
	if err := d.startKeyWatch(ctx); err != nil {
		d.closeCore()
		return fmt.Errorf("key generation: %w", err)
	}
	fsOpts := imgfs.Options{ReadOnly: o.ReadOnly, Logger: log, FUSEDebug: o.DebugFUSE}
	if err := d.startSimilar(&fsOpts); err != nil {
		d.closeCore()
		return fmt.Errorf("similar: %w", err)
	}
	m, err := imgfs.Mount(mp, d.core, fsOpts)
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
		return d.pending(), nil
	})
	ctl.Handle("umount", d.umountOp)
	go ctl.Serve()

	serveErr := make(chan error, 1)
	go func() {
		serveErr <- m.Serve()
		close(d.served)
	}()
	log.Info("imgfs: mounted", "mountpoint", mp, "store", o.StoreName, "cache", o.CacheDir, "read_only", o.ReadOnly, "pid", os.Getpid())
	if o.Ready != nil {
		o.Ready.Ready(notes)
	} else {
		for _, n := range notes {
			fmt.Fprintln(o.Stderr, "imgfs: "+n)
		}
	}

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

func (d *daemon) status() Status {
	s := d.core.Status()
	st := Status{Mountpoint: d.o.Mountpoint, Store: d.o.StoreName, CacheDir: d.o.CacheDir, PID: os.Getpid(), ReadOnly: d.o.ReadOnly,
		Files: s.Files, Dirs: s.Dirs, LogicalBytes: s.LogicalBytes, StoredBytes: s.StoredBytes, ContentObjects: s.ContentObjects,
		PendingSeals: s.PendingSeals, PendingUploads: s.PendingUploads, PendingCommit: s.PendingCommit}
	if s.StoredBytes > 0 {
		st.DedupRatio = float64(s.LogicalBytes) / float64(s.StoredBytes)
	}
	st.Extra = map[string]any{"devices": d.devices.get(d.core)}
	if d.keyWatch != nil {
		st.Extra["key"] = d.keyWatch.Status()
	}
	d.similarStatus(st.Extra)
	return st
}

// pending is status without the totals and extras (the answer of sync).
func (d *daemon) pending() Status {
	p := d.core.Pending()
	return Status{Mountpoint: d.o.Mountpoint, Store: d.o.StoreName, CacheDir: d.o.CacheDir, PID: os.Getpid(), ReadOnly: d.o.ReadOnly,
		PendingSeals: p.PendingSeals, PendingUploads: p.PendingUploads, PendingCommit: p.PendingCommit}
}

// sync waits until nothing is pending: core, then the indexer, then core again.
func (d *daemon) sync(ctx context.Context) error {
	if d.o.ReadOnly {
		return nil
	}
	if err := d.core.Sync(ctx); err != nil {
		return err
	}
	if d.similar == nil {
		return nil
	}
	if err := d.similar.Wait(ctx); err != nil {
		return err
	}
	// What the indexer wrote while it worked (its aux tables) is committed too: nothing is
	// left for a background commit (a no-op when nothing changed).
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
	return imgfs.Unmount(d.o.Mountpoint)
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
	return UmountReply{PID: os.Getpid(), Warnings: d.closeErr}, nil
}

// finish runs after Serve returned: the indexer stops, a last sync, core.Close.
func (d *daemon) finish(forced bool) {
	if d.similar != nil {
		d.similar.Close()
	}
	if !forced && !d.o.ReadOnly {
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
	if d.stopKeyWatch != nil {
		d.stopKeyWatch()
	}
	if err := d.o.Vault.CloseFS(); err != nil {
		d.closeErr = append(d.closeErr, "close: "+err.Error())
	}
	select {
	case <-d.closed:
	default:
		close(d.closed)
	}
}
