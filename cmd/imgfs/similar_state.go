package main

// imgfs similar --failed: the files the near-duplicate index could not embed, and why
// (docs/similar.md, "Is the index on?"; the daemon's side is fs/daemon/similar.go).

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs/control"
	"github.com/imgfs/imgfs/fs/similar"
)

// runSimilarFailed is imgfs similar --failed [MOUNTPOINT]: the files of the mount that are
// not in the index, and why.
func runSimilarFailed(cmd *cobra.Command, args []string) error {
	if len(args) > 1 {
		return usageErrorf("--failed takes at most one MOUNTPOINT")
	}
	mp, err := mountOfArgs(args)
	if err != nil {
		return err
	}
	var fs []similar.Failure
	err = control.CallContext(cmd.Context(), mp, similar.OpFailed, nil, &fs)
	var re *control.RemoteError
	if errors.As(err, &re) && strings.Contains(re.Msg, "unknown control op") {
		return fmt.Errorf("the near-duplicate index of %s is off (imgfs status %s says why)", mp, mp)
	}
	if err != nil {
		return ctlErr(mp, err)
	}
	for i := range fs {
		fs[i].Path = filepath.Join(mp, fs[i].Path)
	}
	out := cmd.OutOrStdout()
	if similarFlags.json {
		return writeJSON(out, fs)
	}
	for _, f := range fs {
		fmt.Fprintf(out, "%s\t%s\n", f.Path, f.Reason)
	}
	return nil
}
