package main

// CONTRACT (owned by the CLI helper): shared helpers every subcommand uses.

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// run executes rootCmd and maps the error to a documented exit code, printing one line.
func run() int {
	if err := rootCmd.Execute(); err != nil {
		return 1
	}
	return 0
}

// openStore opens a store URL: a directory path (local store) or s3:http(s)://HOST:PORT/BUCKET[/PREFIX].
// An empty url means the default local store ($XDG_DATA_HOME/imgfs/store).
func openStore(ctx context.Context, url string) (backend.Store, error) { panic("unimplemented") }

// readPassphrase gets the passphrase from --passphrase-file, IMGFS_PASSPHRASE_FILE,
// IMGFS_PASSPHRASE or a no-echo prompt (twice when confirm is set). Never from argv.
func readPassphrase(cmd *cobra.Command, confirm bool) ([]byte, error) { panic("unimplemented") }

// unlockVault reads the passphrase and unlocks the vault in store.
func unlockVault(ctx context.Context, cmd *cobra.Command, store backend.Store) (*keyring.Keys, error) {
	panic("unimplemented")
}
