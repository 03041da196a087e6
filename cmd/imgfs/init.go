package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/dedup/keyring"
)

func init() {
	var mode, secretFile string
	cmd := &cobra.Command{
		Use:   "init [--store URL] [--convergence vault|group|global] [--convergence-secret-file FILE]",
		Short: "Create a new vault in a store (asks for a passphrase twice)",
		Long: `Creates a vault: a random master key, vault id and convergence secret, and one key slot
wrapped under Argon2id(passphrase). The passphrase comes from --passphrase-file,
$IMGFS_PASSPHRASE_FILE, $IMGFS_PASSPHRASE or a no-echo prompt (asked twice).

Convergence scope (which files deduplicate against each other):
  vault   (default) a random secret of this vault: the store cannot tell whether you hold
          a known file.
  group   a 32-byte secret shared by a group of vaults (--convergence-secret-file: 32 raw
          bytes or 64 hex digits); everyone holding it can confirm your files.
  global  a public constant (the cross-user setting of convergent encryption): anyone,
          the store included, can confirm whether you hold a given file.`,
		Example: `  imgfs init --store /mnt/nas/photos-vault
  IMGFS_PASSPHRASE_FILE=~/.imgfs-pass imgfs init --store s3:https://s3.example.net/bucket/photos
  head -c 32 /dev/urandom > group.key && imgfs init --convergence group --convergence-secret-file group.key`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInit(cmd, mode, secretFile)
		},
	}
	cmd.Flags().StringVar(&mode, "convergence", keyring.ModeVault, "convergence scope: vault, group or global")
	cmd.Flags().StringVar(&secretFile, "convergence-secret-file", "", "file with the 32-byte group convergence secret (raw or 64 hex digits); --convergence group only")
	rootCmd.AddCommand(cmd)
}

func runInit(cmd *cobra.Command, mode, secretFile string) error {
	ctx := cmd.Context()
	opts := keyring.CreateOptions{Mode: mode}
	switch mode {
	case keyring.ModeVault, keyring.ModeGlobal:
		if secretFile != "" {
			return usageErrorf("--convergence-secret-file needs --convergence group")
		}
	case keyring.ModeGroup:
		if secretFile == "" {
			return usageErrorf("--convergence group needs --convergence-secret-file FILE (32 random bytes, e.g. head -c 32 /dev/urandom > FILE)")
		}
		cs, err := readConvergenceSecret(secretFile)
		if err != nil {
			return err
		}
		defer clear(cs)
		opts.ConvergenceSecret = cs
	default:
		return usageErrorf("--convergence must be vault, group or global, not %q", mode)
	}
	kdf, err := kdfParams()
	if err != nil {
		return err
	}
	opts.KDF = kdf

	url := storeURLFor()
	store, err := openStore(ctx, url)
	if err != nil {
		return err
	}
	defer store.Close()
	if ok, err := keyring.Exists(ctx, store); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%w (use it with the other commands, or pick another --store)", keyring.ErrVaultExists)
	}
	if err := requireSafeStore(ctx, store, cmd.ErrOrStderr()); err != nil {
		return err
	}
	if mode == keyring.ModeGlobal {
		fmt.Fprintln(cmd.ErrOrStderr(), "imgfs: warning: --convergence global uses a public convergence secret: anyone with access to the store can confirm whether this vault holds a given file (confirmation attack) and guess low-entropy files; use it only if cross-user deduplication is worth that")
	}
	pass, err := readPassphrase(cmd, true)
	if err != nil {
		return err
	}
	defer clear(pass)
	keys, err := keyring.Create(ctx, store, pass, opts)
	if err != nil {
		return err
	}
	defer keys.Wipe()
	where := url
	if where == "" {
		where = defaultStorePath()
	}
	fmt.Fprintf(cmd.OutOrStdout(), "created vault %s in %s (convergence: %s)\n", hex.EncodeToString(keys.VaultID[:]), where, keys.Mode)
	return nil
}

// readConvergenceSecret reads a 32-byte secret: 32 raw bytes, or 64 hex digits (whitespace
// around them ignored).
func readConvergenceSecret(f string) (keyring.Secret, error) {
	b, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("cannot read convergence secret: %w", err)
	}
	defer clear(b)
	if len(b) == 32 {
		return keyring.Secret(bytes.Clone(b)), nil
	}
	t := bytes.TrimSpace(b)
	if len(t) == 64 {
		out := make([]byte, 32)
		if _, err := hex.Decode(out, t); err == nil {
			return keyring.Secret(out), nil
		}
	}
	return nil, usageErrorf("convergence secret file %s must hold exactly 32 bytes or 64 hex digits", f)
}
