package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/dedup/maint"
	"github.com/imgfs/imgfs/fs/core"
)

// defaultGrace: how long an object must have been seen unreferenced before gc deletes it.
const defaultGrace = 24 * time.Hour

func init() {
	var cacheDir, grace, forget string
	var dryRun, breakLock bool
	cmd := &cobra.Command{
		Use:   "gc [--store URL] [--grace DURATION] [--dry-run] [--break-lock] [--cache DIR]",
		Short: "Delete stored objects no file references any more (lock + grace period)",
		Long: `Deletes content and metadata objects that the vault's current root does not reference.
An object is deleted only after gc has seen it unreferenced for the grace period (default
24h; first-seen times are kept, encrypted, in the store), and only if it is still
unreferenced when gc re-reads the root just before deleting. So the first run after a
deletion only marks objects, and a later run (after the grace period) deletes them;
--grace 0 deletes at once (safe only when no crashed mount has unsaved work).
gc takes its own gc lock and refuses to run (exit 7) while another gc runs, or while another
device may hold work that is not in the store (a writer mount, a crashed device: see
--forget-device). Every root from the oldest device's last-seen root on stays live. In group and global convergence modes content objects may
be shared with other vaults and are never deleted. See docs/cli.md for why this is safe.
DURATION is a Go duration (90m, 36h) or a number of days (7d).`,
		Example: `  imgfs gc --store /mnt/nas/vault
  imgfs gc --store /mnt/nas/vault --grace 7d --dry-run`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := parseDuration(grace)
			if err != nil {
				return usageErrorf("--grace %q: %v", grace, err)
			}
			s, err := openSession(cmd, cacheDir, false)
			if err != nil {
				return err
			}
			if err := gcDevicesGuard(cmd, s, forget); err != nil {
				s.Close()
				return err
			}
			roots := 0
			if !dryRun {
				if roots, err = s.fs.CollectRoots(cmd.Context(), core.DefaultKeepRoots); err != nil {
					s.Close()
					return err
				}
			}
			host, _ := os.Hostname()
			var prog *progress
			rep, err := maint.GC(cmd.Context(), s.store, s.keys, maint.GCOptions{
				Grace:     g,
				Live:      s.fs.GCLive,
				Owner:     fmt.Sprintf("%s pid %d", host, os.Getpid()),
				BreakLock: breakLock,
				DryRun:    dryRun,
				ListDone:  func(n int) { prog = newProgress(int64(n), "deleting", false) },
				Progress:  func(n int64) { prog.Add(n) },
			})
			if prog != nil {
				prog.Finish()
			}
			if cerr := s.Close(); err == nil && cerr != nil {
				err = cerr
			}
			if errors.Is(err, maint.ErrLocked) {
				return withCode(exitBusy, fmt.Errorf("%w; if no gc is running (it crashed), rerun with --break-lock", err))
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			verb := "deleted"
			if dryRun {
				verb = "would delete"
			}
			fmt.Fprintf(out, "objects: %d; unreferenced: %d (%d newly seen); %s: %d (%d bytes); waiting for the grace period: %d\n",
				rep.Objects, rep.Unreferenced, rep.NewlyMarked, verb, len(rep.Deleted), rep.DeletedBytes, rep.Waiting)
			if roots > 0 {
				fmt.Fprintf(out, "old roots deleted: %d (kept every root from the oldest device's last one)\n", roots)
			}
			if rep.Rescued > 0 {
				fmt.Fprintf(out, "kept %d object(s) referenced again while gc ran\n", rep.Rescued)
			}
			if rep.KeptShared > 0 {
				fmt.Fprintf(out, "kept %d content object(s): this vault's convergence secret is shared (group/global mode)\n", rep.KeptShared)
			}
			if !rep.NextDeletable.IsZero() {
				fmt.Fprintf(out, "next run deletes more after %s\n", rep.NextDeletable.Local().Format(time.RFC3339))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cacheDir, "cache", "", cacheFlagHelp)
	cmd.Flags().StringVar(&grace, "grace", defaultGrace.String(), "delete only objects seen unreferenced at least this long ago")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "mark and report, delete nothing")
	cmd.Flags().BoolVar(&breakLock, "break-lock", false, "remove a gc lock left by a crashed gc first")
	cmd.Flags().StringVar(&forget, "forget-device", "", "drop the presence record of a device that is gone for good (its unsynced work is given up)")
	rootCmd.AddCommand(cmd)
}

// gcDevicesGuard refuses gc while another device may hold work not in the store (a writer
// mount, or a device that crashed or closed with work left): gc could delete the objects it
// uploaded or will reference (docs/cli.md, gc). --forget-device NAME drops one first.
func gcDevicesGuard(cmd *cobra.Command, s *session, forget string) error {
	ctx := cmd.Context()
	if forget != "" {
		n, err := core.ForgetDevice(ctx, s.store, s.keys, forget)
		if err != nil {
			return err
		}
		if n == 0 {
			return usageErrorf("--forget-device %q: no device of that name (see imgfs status)", forget)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "forgot device %s (%d presence record(s))\n", forget, n)
	}
	devs, err := s.fs.OtherUnsyncedDevices(ctx)
	if err != nil {
		return err
	}
	if len(devs) == 0 {
		return nil
	}
	var names []string
	for _, d := range devs {
		names = append(names, fmt.Sprintf("%s (last seen %s)", d.Device, time.Unix(0, d.Time).Local().Format("2006-01-02 15:04")))
	}
	return withCode(exitBusy, fmt.Errorf("gc: other devices may hold work that is not in the store yet: %s; "+
		"unmount them (or mount and unmount a crashed one, so it syncs), then run gc again; "+
		"for a device that is gone for good: imgfs gc --forget-device NAME", strings.Join(names, ", ")))
}

// parseDuration accepts Go durations and whole days ("7d").
func parseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(d, 10, 16)
		if err != nil {
			return 0, errors.New("days must be a whole number, as in 7d")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, errors.New("negative duration")
	}
	return d, nil
}
