package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs/transfer"
)

func init() {
	var cacheDir string
	cmd := &cobra.Command{
		Use:   "export [--store URL] [--cache DIR] SRC DEST",
		Short: "Copy a vault directory tree out to a local directory without mounting it",
		Long: `Copies the vault directory SRC into the local directory DEST (created if missing), like
cp -a SRC/. DEST: files byte for byte (every byte verified before it is written), permission
bits, modification times, symlinks and hard links. Each file is written under a temporary
name and renamed into place, so an interrupted or failed export never leaves a partial file
under a real name. If SRC is a file, it is exported as DEST, or into DEST when DEST is an
existing directory. Opens the vault read-only.`,
		Example: `  imgfs export --store /mnt/nas/vault 2024 ~/restore/2024
  imgfs export --store /mnt/nas/vault / /media/backup/photos`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openSession(cmd, cacheDir, true)
			if err != nil {
				return err
			}
			defer s.Close()
			prog := &transferProgress{desc: "exporting"}
			res, err := transfer.Export(cmd.Context(), s.fs, vaultPath(args[0]), args[1], transferOptions(cmd, prog))
			prog.Finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %d files (%d bytes), %d directories, %d symlinks, %d hard links to %s\n",
				res.Files, res.Bytes, res.Dirs, res.Symlinks, res.Hardlinks, args[1])
			return nil
		},
	}
	cmd.Flags().StringVar(&cacheDir, "cache", "", cacheFlagHelp)
	rootCmd.AddCommand(cmd)
}
