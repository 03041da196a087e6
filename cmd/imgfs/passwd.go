package main

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/dedup/keyring"
)

func init() {
	var add, remove bool
	var newFile string
	cmd := &cobra.Command{
		Use:   "passwd [--store URL] [--add | --remove]",
		Short: "Change, add or remove a vault passphrase (no data is re-encrypted)",
		Long: `Without flags: asks for the current passphrase and a new one, adds a key slot for the
new passphrase, then removes the slot(s) of the old one.
--add     keeps the current passphrase and adds another one.
--remove  removes the passphrase you enter (another one must remain).

The current passphrase comes from --passphrase-file, $IMGFS_PASSPHRASE_FILE,
$IMGFS_PASSPHRASE or a prompt; the new one from --new-passphrase-file,
$IMGFS_NEW_PASSPHRASE_FILE, $IMGFS_NEW_PASSPHRASE or a prompt (asked twice).

Only key slots change: the master key stays, so whoever kept a copy of an old slot (store
versioning, backups) together with the old passphrase can still unlock the vault.`,
		Example: `  imgfs passwd --store /mnt/nas/vault
  IMGFS_PASSPHRASE_FILE=old.txt IMGFS_NEW_PASSPHRASE_FILE=new.txt imgfs passwd --store /mnt/nas/vault`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if add && remove {
				return usageErrorf("--add and --remove exclude each other")
			}
			return runPasswd(cmd, add, remove, newFile)
		},
	}
	cmd.Flags().BoolVar(&add, "add", false, "add a passphrase, keep the current one")
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the passphrase you enter (another must remain)")
	cmd.Flags().StringVar(&newFile, "new-passphrase-file", "", "read the new passphrase from this file; see also $IMGFS_NEW_PASSPHRASE_FILE")
	rootCmd.AddCommand(cmd)
}

func runPasswd(cmd *cobra.Command, add, remove bool, newFile string) error {
	ctx := cmd.Context()
	kdf, err := kdfParams()
	if err != nil {
		return err
	}
	store, err := openStore(ctx, storeURLFor())
	if err != nil {
		return err
	}
	defer store.Close()
	src := currentPassphrase
	src.flag = flagPassphraseFile
	if !remove {
		src.prompt = "Current passphrase"
	}
	keys, old, err := unlockKeepingPassphrase(ctx, store, existingVaultPassphraseFrom(cmd, src))
	if err != nil {
		return err
	}
	defer clear(old)
	defer keys.Wipe()

	out := cmd.OutOrStdout()
	if remove {
		if err := keyring.RemoveSlot(ctx, store, keys, old); err != nil {
			if errors.Is(err, keyring.ErrLastSlot) {
				return usageErrorf("%v: add another first (imgfs passwd --add)", err)
			}
			return err
		}
		fmt.Fprintln(out, "passphrase removed")
		return nil
	}

	newSrc := passphraseSource{flag: newFile, fileEnv: "IMGFS_NEW_PASSPHRASE_FILE", valueEnv: "IMGFS_NEW_PASSPHRASE", prompt: "New passphrase"}
	np, err := readPassphraseFrom(cmd, newSrc, true)
	if err != nil {
		return err
	}
	defer clear(np)
	if bytes.Equal(np, old) {
		return usageErrorf("the new passphrase equals the current one")
	}
	if add {
		if err := keyring.AddSlot(ctx, store, keys, np, kdf); err != nil {
			return err
		}
		fmt.Fprintln(out, "passphrase added")
		return nil
	}
	// keyring.ChangePassphrase, in two steps so a concurrent change is reported as such:
	// the new slot is stored first, so the vault is never left without a passphrase.
	if err := keyring.AddSlot(ctx, store, keys, np, kdf); err != nil {
		return fmt.Errorf("adding the new passphrase: %w", err)
	}
	if err := keyring.RemoveSlot(ctx, store, keys, old); err != nil {
		if errors.Is(err, keyring.ErrWrongPassphrase) {
			// Unlock opened a slot with old a moment ago: someone else removed it since.
			return errors.New("conflict: another client changed the passphrase at the same time; your new passphrase was added and works, and so does the other client's (remove one with imgfs passwd --remove)")
		}
		return fmt.Errorf("the new passphrase was added, but removing the old one failed (both work now; retry with imgfs passwd --remove): %w", err)
	}
	fmt.Fprintln(out, "passphrase changed")
	return nil
}
