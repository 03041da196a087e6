package main

// imgfs similar --mark / --unmark / --marks: "not a duplicate" marks (fs/similar/marks.go,
// docs/similar.md "Marks"), through the daemon's control socket.

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs/control"
	"github.com/imgfs/imgfs/fs/similar"
)

func runMarks(cmd *cobra.Command, args []string) error {
	ctx := cmd.Context()
	n := 0
	for _, b := range []bool{similarFlags.mark, similarFlags.unmark, similarFlags.marks, similarFlags.all, similarFlags.reindex} {
		if b {
			n++
		}
	}
	if n > 1 {
		return usageErrorf("--mark, --unmark, --marks, --all and --reindex exclude each other")
	}
	if similarFlags.marks {
		if len(args) > 1 {
			return usageErrorf("--marks takes at most one MOUNTPOINT")
		}
		mp, err := mountOfArgs(args)
		if err != nil {
			return err
		}
		var resp similar.MarksResponse
		if err := control.CallContext(ctx, mp, similar.OpMarks, nil, &resp); err != nil {
			return ctlErr(mp, err)
		}
		for i := range resp.Marks {
			resp.Marks[i].A = filepath.Join(mp, resp.Marks[i].A)
			resp.Marks[i].B = filepath.Join(mp, resp.Marks[i].B)
		}
		if similarFlags.json {
			return writeJSON(cmd.OutOrStdout(), resp)
		}
		for _, m := range resp.Marks {
			fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", m.A, m.B)
		}
		return nil
	}
	if similarFlags.mark && len(args) != 2 {
		return usageErrorf("--mark takes two PATHs")
	}
	if len(args) == 0 {
		return usageErrorf("--unmark takes at least one PATH")
	}
	mp := ""
	var rels []string
	for _, a := range args {
		abs := absPath(a)
		m, err := findMount(abs)
		if err != nil {
			return err
		}
		if mp != "" && m != mp {
			return usageErrorf("%s and %s are in different mounts", args[0], a)
		}
		mp = m
		rel, _ := filepath.Rel(mp, abs)
		rels = append(rels, filepath.ToSlash(rel))
	}
	req := similar.MarkRequest{Unmark: similarFlags.unmark}
	if len(rels) == 1 {
		req.Pairs = []similar.PairRef{{A: rels[0]}}
	}
	for i := range rels {
		for j := i + 1; j < len(rels); j++ {
			req.Pairs = append(req.Pairs, similar.PairRef{A: rels[i], B: rels[j]})
		}
	}
	var resp similar.MarkResponse
	if err := control.CallContext(ctx, mp, similar.OpMark, req, &resp); err != nil {
		return ctlErr(mp, err)
	}
	if similarFlags.unmark {
		fmt.Fprintf(cmd.ErrOrStderr(), "imgfs: removed %d not-a-duplicate mark(s)\n", resp.Changed)
	} else {
		fmt.Fprintf(cmd.ErrOrStderr(), "imgfs: marked %d new pair(s) as not a duplicate\n", resp.Changed)
	}
	return nil
}
