package main

// What the user sees of the near-duplicate index's state (docs/similar.md, "Is the index
// on?"): imgfs mount prints why it is off and the command that fixes it; imgfs status shows
// on/off and how many files could not be embedded; imgfs similar --failed lists them.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/embed"
	"github.com/imgfs/imgfs/fs/control"
	"github.com/imgfs/imgfs/fs/similar"
)

// similarIndexOff is called by the mount hook when the index cannot run: it logs, tells the
// user of imgfs mount (unless they turned it off themselves), and shows it in imgfs status.
func similarIndexOff(env *mountEnv, why error, byFlag bool) {
	state := "off: " + why.Error()
	if !byFlag {
		fix := modelFix(why, env.Mountpoint)
		env.Log.Warn("similar: near-duplicate index disabled (no .similar/): " + why.Error())
		env.Notice("near-duplicate index disabled (no .similar/): " + why.Error() + ". " + fix)
		state += ". " + fix
	}
	env.AddStatus(func() map[string]any { return map[string]any{"similar_index": state} })
}

// modelFix is the command that brings the model back.
func modelFix(why error, mp string) string {
	remount := "then remount (imgfs umount " + mp + ", imgfs mount ... " + mp + ")"
	name := embed.DefaultModelName + ".imgfsmodel"
	if errors.Is(why, embed.ErrNoModel) {
		return "To fix: run `make setup` in the imgfs source tree (or scripts/fetch-model.sh), which installs the model in " +
			filepath.Join(embed.InstalledModelDirs()[0], name) + ", or set IMGFS_MODEL=/path/to/" + name + "; " + remount
	}
	return "To fix: fetch the model again with scripts/fetch-model.sh in the imgfs source tree (or point IMGFS_MODEL at a good copy); " + remount
}

// similarIndexOn adds the index's state and failures to imgfs status, and the op that
// lists the failures.
func similarIndexOn(env *mountEnv, x *similar.Indexer) {
	env.AddStatus(func() map[string]any {
		return map[string]any{"similar_index": "on (model " + x.Stats().Model + ")", "similar_not_embedded": len(x.Failures())}
	})
	env.Control.Handle(similar.OpFailed, func(context.Context, json.RawMessage) (any, error) { return x.Failures(), nil })
}

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
