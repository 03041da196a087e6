package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs/transfer"
)

func init() {
	var cacheDir string
	cmd := &cobra.Command{
		Use:   "import [--store URL] [--cache DIR] SRC DEST",
		Short: "Copy a local directory tree into the vault without mounting it",
		Long: `Copies the contents of the local directory SRC into the vault directory DEST (created
with its parents if missing), like cp -a SRC/. DEST: regular files byte for byte, permission
bits, modification times, symlinks (as links) and hard links; sockets, fifos and devices are
skipped with a warning. Existing vault files of the same name are replaced. If SRC is a
file, it is imported as DEST, or into DEST when DEST is a vault directory.
Returns once everything is sealed, stored and committed. Refuses to run while a writer
mount of the vault is running (exit 7).`,
		Example: `  imgfs import --store /mnt/nas/vault /media/card/DCIM 2024/card1
  imgfs import --store s3:https://s3.example.net/bucket/photos ~/Pictures /`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := transfer.CheckSource(args[0]); errors.Is(err, transfer.ErrSourceKind) {
				return withCode(exitUsage, err)
			} else if err != nil {
				return err
			}
			s, err := openSession(cmd, cacheDir, false)
			if err != nil {
				return err
			}
			prog := &transferProgress{desc: "importing"}
			res, err := transfer.Import(cmd.Context(), s.fs, args[0], vaultPath(args[1]), transferOptions(cmd, prog))
			prog.Finish()
			if cerr := s.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("committing the import: %w", cerr)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d files (%d bytes), %d directories, %d symlinks, %d hard links into %s\n",
				res.Files, res.Bytes, res.Dirs, res.Symlinks, res.Hardlinks, vaultPath(args[1]))
			return nil
		},
	}
	cmd.Flags().StringVar(&cacheDir, "cache", "", cacheFlagHelp)
	rootCmd.AddCommand(cmd)
}

// transferOptions: warnings go to the command's stderr, a progress bar when stderr is a
// terminal.
func transferOptions(cmd *cobra.Command, prog *transferProgress) transfer.Options {
	o := transfer.Options{Warn: cmd.ErrOrStderr()}
	if stderrIsTerminal() {
		o.Progress = prog
	}
	return o
}

// transferProgress draws the bar of an import or export (transfer.Progress).
type transferProgress struct {
	desc string
	bar  *progress
}

func (p *transferProgress) Start(total int64) { p.bar = newProgress(total, p.desc, true) }
func (p *transferProgress) Add(n int64)       { p.bar.Add(n) }
func (p *transferProgress) Finish()           { p.bar.Finish() }
