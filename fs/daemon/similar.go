package daemon

// The mount's near-duplicate indexer (fs/similar) and what the user sees of its state
// (docs/similar.md, "Is the index on?"): imgfs mount prints why it is off and the command
// that fixes it; imgfs status shows on/off and how many files could not be embedded; the
// similar.failed op lists them (imgfs similar --failed).

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"

	"github.com/imgfs/imgfs/embed"
	imgfs "github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/fs/core"
	"github.com/imgfs/imgfs/fs/similar"
)

// prepareSimilar loads the model and creates the indexer before the core opens, so that it
// sees every file sealed from the start. A missing or damaged model turns the index off
// with a note for the user, not the mount.
func (d *daemon) prepareSimilar(copts *core.Options, notes *[]string) error {
	if d.o.NoSimilar {
		d.similarState = "off: --no-similar"
		return nil
	}
	emb, err := similar.LoadDefaultModel()
	if err != nil {
		fix := modelFix(err, d.o.Mountpoint)
		d.log.Warn("similar: near-duplicate index disabled (no .similar/): " + err.Error())
		*notes = append(*notes, "near-duplicate index disabled (no .similar/): "+err.Error()+". "+fix)
		d.similarState = "off: " + err.Error() + ". " + fix
		return nil
	}
	x, err := similar.New(similar.Config{Embedder: emb, Threshold: float32(d.o.SimilarThreshold), Logger: d.log,
		ReadOnly: d.o.ReadOnly})
	if err != nil {
		return err
	}
	d.similar = x
	copts.OnSealed = x.OnSealed
	copts.Plaintext = x
	copts.LazyAux = similar.LazyTables
	return nil
}

// startSimilar starts the indexer over the open core, adds .similar/ to the mount and the
// indexer's ops to the control socket.
func (d *daemon) startSimilar(fsOpts *imgfs.Options) error {
	x := d.similar
	if x == nil {
		return nil
	}
	if err := x.Start(similar.CoreVault(d.core)); err != nil {
		return err
	}
	fsOpts.Similar = imgfs.SimilarTree(x, d.log)
	x.Register(d.ctl)
	d.ctl.Handle(similar.OpFailed, func(context.Context, json.RawMessage) (any, error) { return x.Failures(), nil })
	return nil
}

// similarStatus adds the index's fields to imgfs status.
func (d *daemon) similarStatus(extra map[string]any) {
	x := d.similar
	if x == nil {
		extra["similar_index"] = d.similarState
		return
	}
	st := x.Stats()
	extra["similar_index"] = "on (model " + st.Model + ")"
	extra["similar_not_embedded"] = len(x.Failures())
	extra["similar_embeddings"] = st.Embeddings
	extra["similar_backlog"] = st.Backlog
	extra["similar_threshold"] = st.Threshold
	extra["similar_from_plaintext"] = st.FromPlaintext
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
