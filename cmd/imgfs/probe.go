package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/probe"
)

// The store probe (docs/cli.md, probe): several devices commit roots with create-only
// conditional writes, so a store that does not honour them could let one device overwrite
// another's root. init, every writer mount and `imgfs probe` run it.

func init() {
	cmd := &cobra.Command{
		Use:   "probe [--store URL]",
		Short: "Check that the store honours create-only conditional writes (needed for writing)",
		Long: `Runs the four checks imgfs needs from a store before it writes to it:
a create-only PUT of a fresh key succeeds; repeating it is refused (412); a PUT with a wrong
If-Match is refused (412; not applicable to a local directory); and 8 concurrent create-only
PUTs of one fresh key give exactly one success. init and every writer mount run the same probe
and refuse a store that fails. Needs no passphrase; writes and deletes objects under probe/.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := openStore(cmd.Context(), storeURLFor())
			if err != nil {
				return err
			}
			defer store.Close()
			res, err := probe.Run(cmd.Context(), store, 0)
			if err != nil {
				return withCode(exitUnreachable, err)
			}
			printProbe(cmd.OutOrStdout(), res)
			if !res.OK() {
				return errStoreUnsafe(res)
			}
			return nil
		},
	}
	rootCmd.AddCommand(cmd)
}

func printProbe(w io.Writer, res *probe.Result) {
	for _, c := range res.Checks {
		verdict := "ok"
		switch {
		case c.Skipped:
			verdict = "n/a"
		case !c.OK:
			verdict = "FAILED"
		}
		fmt.Fprintf(w, "%-6s %s: %s\n", verdict, c.Name, c.Detail)
	}
}

func errStoreUnsafe(res *probe.Result) error {
	return fmt.Errorf("the store does not honour create-only conditional writes (%s); devices could overwrite each other's roots, so imgfs does not write to it: use a store that passes imgfs probe (docs/cli.md), or mount --read-only", res.Failed())
}

// requireSafeStore runs the probe before a writer uses the store. A store that cannot be
// reached is not refused here (the open that follows reports it); one that fails a check is.
func requireSafeStore(ctx context.Context, store backend.Store, stderr io.Writer) error {
	res, err := probe.Run(ctx, store, 0)
	if err != nil {
		fmt.Fprintf(stderr, "imgfs: warning: could not probe the store (%v)\n", err)
		return nil
	}
	if !res.OK() {
		return errStoreUnsafe(res)
	}
	return nil
}
