package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/dedup/maint"
	"github.com/imgfs/imgfs/fs/core"
)

// imgfs rekey: docs/cli.md "rekey", docs/format.md §3.1.

func init() {
	var cacheDir, forget string
	var content, breakLock bool
	cmd := &cobra.Command{
		Use:   "rekey [--store URL] [--content] [--cache DIR]",
		Short: "Replace the vault's master key and convergence secret (after a leak)",
		Long: `Replaces the vault's master key (and, in the default convergence mode, its convergence
secret) and re-encrypts all metadata (names, sizes, directory tree, embeddings) under the new
key. Use it when a passphrase together with a copy of a key slot, or the keys themselves,
may have leaked: imgfs passwd only changes the passphrase, not the key it protects.

What it costs:
  default    re-encrypts the metadata only: every file content object stays as it is.
             Fast (a few metadata objects per 1000 files). Content stays readable to
             whoever kept a copy of the old metadata, an attacker with the old convergence
             secret can still confirm that the vault holds a photo he has, and photos
             written again later are not deduplicated against the old ones.
  --content  also re-encrypts every file under the new convergence secret: the whole
             vault is downloaded, decrypted, chunked, encrypted and uploaded again (its
             full size in both directions, and about a minute of CPU per 10 GB). Afterwards
             nothing in the store opens under the old keys.
In both cases the old objects stay in the store until imgfs gc deletes them (they are no
longer referenced): run imgfs gc --grace 0 after the rekey to delete them at once.

The rekey refuses to run (exit 7) while another device may hold work that is not in the
store, like gc; it takes the gc lock. It stores this device's unsynced work first. If it is
interrupted (Ctrl-C, kill -9, a crash), the vault stays readable under the old key, and
running imgfs rekey again finishes it with the same new key, reusing what was already
re-encrypted (a checkpoint every 256 MiB or 30 s; uploads are deduplicated). Other devices
rebuild their local cache from the store at their next mount.

Passphrases: the passphrase you enter keeps working (a new key slot for the new key). Every
other passphrase of the vault is removed; add them again with imgfs passwd --add.
In group and global convergence modes the convergence secret is shared with other vaults
and is kept; --content is refused there.`,
		Example: `  imgfs rekey --store /mnt/nas/vault
  imgfs rekey --store /mnt/nas/vault --content && imgfs gc --store /mnt/nas/vault --grace 0`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRekey(cmd, rekeyFlags{content: content, cache: cacheDir, breakLock: breakLock, forget: forget})
		},
	}
	cmd.Flags().BoolVar(&content, "content", false, "also re-encrypt every file's content under the new convergence secret (reads and rewrites the whole vault)")
	cmd.Flags().StringVar(&cacheDir, "cache", "", cacheFlagHelp)
	cmd.Flags().BoolVar(&breakLock, "break-lock", false, "remove a gc lock left by a crashed gc first")
	cmd.Flags().StringVar(&forget, "forget-device", "", "drop the presence record of a device that is gone for good (its unsynced work is given up)")
	rootCmd.AddCommand(cmd)
}

type rekeyFlags struct {
	content, breakLock bool
	cache, forget      string
}

// rekeyOwner is what the gc lock records for a rekey; a rerun on the same host breaks the
// lock of a rekey process that no longer runs.
func rekeyOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("imgfs rekey on %s pid %d", host, os.Getpid())
}

// staleRekeyLock: owner is a rekey of this host whose process is gone.
func staleRekeyLock(owner string) bool {
	host, _ := os.Hostname()
	rest, ok := strings.CutPrefix(owner, "imgfs rekey on "+host+" pid ")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(rest)
	if err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func runRekey(cmd *cobra.Command, fl rekeyFlags) (err error) {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	url := storeURLFor()
	store, err := openStore(ctx, url)
	if err != nil {
		return err
	}
	defer store.Close()
	cur, pass, err := unlockKeepingPassphrase(ctx, store, existingVaultPassphrase(cmd))
	if err != nil {
		return err
	}
	defer clear(pass)
	defer cur.Wipe()
	if fl.content && cur.Mode != keyring.ModeVault {
		return usageErrorf("--content: this vault's convergence secret is shared (convergence mode %s), a rekey keeps it, so there is no content to re-encrypt", cur.Mode)
	}
	if fl.cache == "" {
		if fl.cache, err = cacheDirFor(url); err != nil {
			return err
		}
	}
	_, older, err := keyring.Leftovers(ctx, store)
	if err != nil {
		return err
	}
	if older > 0 {
		// Interrupted after the switch: only the clean-up is left.
		fmt.Fprintf(out, "finishing an interrupted rekey (key generation %d)\n", cur.Generation)
		if owner, held, err := maint.LockHolder(ctx, store, cur); err != nil {
			return err
		} else if held && (owner == "" || staleRekeyLock(owner)) {
			// Under the old key (owner ""): the interrupted rekey's own lock.
			if err := maint.ReleaseLock(ctx, store); err != nil {
				return err
			}
		}
		if err := maint.TakeLock(ctx, store, cur, rekeyOwner(), fl.breakLock); err != nil {
			return rekeyLockErr(err)
		}
		return finishRekey(ctx, out, store, cur)
	}

	// Store this device's own work, and refuse beside devices that may hold some.
	if err := rekeyPrepare(cmd, store, cur, fl); err != nil {
		return err
	}
	if owner, held, err := maint.LockHolder(ctx, store, cur); err != nil {
		return err
	} else if held && staleRekeyLock(owner) {
		fmt.Fprintf(cmd.ErrOrStderr(), "removing the lock of an interrupted rekey (%s)\n", owner)
		if err := maint.ReleaseLock(ctx, store); err != nil {
			return err
		}
	}
	if err := maint.TakeLock(ctx, store, cur, rekeyOwner(), fl.breakLock); err != nil {
		return rekeyLockErr(err)
	}
	defer func() {
		if err != nil { // the vault stays on the old key, or a rerun finishes the switch
			_ = maint.ReleaseLock(context.WithoutCancel(ctx), store)
		}
	}()

	kdf, err := kdfParams()
	if err != nil {
		return err
	}
	next, err := keyring.Staged(ctx, store, pass)
	if err != nil {
		return err
	}
	if next != nil {
		fmt.Fprintln(out, "resuming an interrupted rekey with its new key")
	} else {
		if next, err = keyring.NewGeneration(cur); err != nil {
			return err
		}
		// The reservation keeps the new key for a rerun after a crash.
		if err := keyring.WriteGeneration(ctx, store, cur, next, pass, kdf, 0, [32]byte{}); err != nil {
			return err
		}
	}
	defer next.Wipe()

	host, _ := os.Hostname()
	var prog *progress
	stage, shown := "", int64(0)
	start := time.Now()
	rep, err := core.Rekey(ctx, store, cur, next, core.RekeyOptions{
		Content: fl.content,
		Device:  host,
		Progress: func(s string, done, total int64) {
			if s != stage {
				prog.Finish()
				stage, shown = s, 0
				prog = newProgress(total, "re-encrypting "+s, s == "content")
			}
			prog.Add(done - shown)
			shown = done
		},
		Switch: func(ctx context.Context, seq uint64, hash dedup.Locator) error {
			// Last look before the switch: a device that started writing meanwhile would
			// hold work under the old key.
			devs, err := core.Devices(ctx, store, cur)
			if err != nil {
				return err
			}
			for _, d := range devs {
				if d.Unsynced {
					return withCode(exitBusy, fmt.Errorf("rekey: device %s started writing during the rekey; nothing was switched: unmount it, then run imgfs rekey again", d.Device))
				}
			}
			return keyring.WriteGeneration(ctx, store, cur, next, pass, kdf, seq, hash)
		},
	})
	prog.Finish()
	if err != nil {
		if errors.Is(err, core.ErrRekeyRace) {
			return withCode(exitBusy, err)
		}
		return fmt.Errorf("rekey: %w (the vault is unchanged and readable with the old key; run imgfs rekey again to finish)", err)
	}
	fmt.Fprintf(out, "new key generation %d: %d metadata object(s) re-encrypted", next.Generation, rep.MetaObjects)
	if fl.content {
		fmt.Fprintf(out, ", %d file content(s) re-encrypted (%d bytes, %d chunk(s), %d uploaded)", rep.Contents, rep.ContentBytes, rep.Chunks, rep.Uploaded)
		if rep.Resumed > 0 {
			fmt.Fprintf(out, ", %d taken from the interrupted run's checkpoint", rep.Resumed)
		}
	}
	fmt.Fprintf(out, " in %s; root %d\n", time.Since(start).Round(time.Millisecond), rep.Root)
	return finishRekey(ctx, out, store, next)
}

// rekeyPrepare opens this device's cache as a writer (storing its work: a rekey works on
// the store only, and the cache is rebuilt afterwards) and refuses beside other devices
// that may hold work not in the store, like gc.
func rekeyPrepare(cmd *cobra.Command, store backend.Store, keys *keyring.Keys, fl rekeyFlags) error {
	ctx := cmd.Context()
	fsys, err := core.Open(ctx, store, keys, core.Options{CacheDir: fl.cache, Logger: cliLogger()})
	if err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return withCode(exitBusy, fmt.Errorf("%w; unmount the vault first (imgfs umount), or give this command another --cache", err))
		}
		return err
	}
	err = fsys.Sync(ctx)
	if err == nil {
		err = rekeyDevicesGuard(cmd, fsys, store, keys, fl.forget)
	}
	if cerr := fsys.Close(); err == nil {
		err = cerr
	}
	return err
}

// rekeyDevicesGuard is gc's guard (gcDevicesGuard) in the words of rekey: another device's
// work under the old key could not be stored after the switch.
func rekeyDevicesGuard(cmd *cobra.Command, fsys *core.FS, store backend.Store, keys *keyring.Keys, forget string) error {
	ctx := cmd.Context()
	if forget != "" {
		n, err := core.ForgetDevice(ctx, store, keys, forget)
		if err != nil {
			return err
		}
		if n == 0 {
			return usageErrorf("--forget-device %q: no device of that name (see imgfs status)", forget)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "forgot device %s (%d presence record(s))\n", forget, n)
	}
	devs, err := fsys.OtherUnsyncedDevices(ctx)
	if err != nil || len(devs) == 0 {
		return err
	}
	var names []string
	for _, d := range devs {
		names = append(names, fmt.Sprintf("%s (last seen %s)", d.Device, time.Unix(0, d.Time).Local().Format("2006-01-02 15:04")))
	}
	return withCode(exitBusy, fmt.Errorf("rekey: other devices may hold work that is not in the store yet: %s; "+
		"unmount them (or mount and unmount a crashed one, so it syncs), then run imgfs rekey again; "+
		"for a device that is gone for good: imgfs rekey --forget-device NAME", strings.Join(names, ", ")))
}

func rekeyLockErr(err error) error {
	if errors.Is(err, maint.ErrLocked) {
		return withCode(exitBusy, fmt.Errorf("%w; a gc or another rekey is running (if it crashed: imgfs rekey --break-lock)", err))
	}
	return err
}

// finishRekey removes what the old keys left besides unreferenced objects (gc's): old
// headers and key slots, old roots and presence records, gc state; then the lock.
func finishRekey(ctx context.Context, out io.Writer, store backend.Store, k *keyring.Keys) error {
	slots, err := keyring.FinishGeneration(ctx, store, k)
	if err != nil {
		return fmt.Errorf("rekey: removing the old key: %w (run imgfs rekey again to finish)", err)
	}
	roots, presence, err := core.FinishRekey(ctx, store, k)
	if err != nil {
		return fmt.Errorf("rekey: %w (run imgfs rekey again to finish)", err)
	}
	if _, err := maint.DropForeignState(ctx, store, k); err != nil {
		return fmt.Errorf("rekey: %w (run imgfs rekey again to finish)", err)
	}
	if err := maint.ReleaseLock(ctx, store); err != nil {
		return err
	}
	fmt.Fprintf(out, "removed the old key: %d key slot(s), %d old root(s), %d presence record(s)\n", slots, roots, presence)
	if slots > 1 {
		fmt.Fprintf(out, "note: %d other passphrase(s) of the old key were removed; add them again with imgfs passwd --add\n", slots-1)
	}
	fmt.Fprintln(out, "objects of the old key are no longer referenced: imgfs gc deletes them (after the grace period; --grace 0 deletes them now)")
	return nil
}
