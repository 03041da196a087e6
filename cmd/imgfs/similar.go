package main

// imgfs similar: near-duplicates of photos in a mount (through the daemon's control socket,
// op "similar"; fs/similar), every near-duplicate pair (--all), and re-embedding (--reindex).
// The indexer itself runs in the mount daemon (fs/daemon).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/imgfs/imgfs/fs/control"
	"github.com/imgfs/imgfs/fs/similar"
)

var similarFlags struct {
	threshold float64
	top       int
	json      bool
	all       bool
	reindex   bool
	mark      bool
	unmark    bool
	marks     bool
	failed    bool
}

var similarCmd = &cobra.Command{
	Use:   "similar [--threshold T] [--top K] [--json] PATH... | --all [--json] [MOUNTPOINT] | --failed [--json] [MOUNTPOINT] | --reindex MOUNTPOINT | --mark A B | --unmark PATH... | --marks [MOUNTPOINT]",
	Short: "Print the near-duplicates of photos in a mount, with scores",
	Long: `Prints, for each PATH (a file inside an imgfs mount), the other photos of the vault that are
the same picture, edited: best match first, with the cosine similarity of their embeddings
(1 for byte-identical copies) and a tier: "identical" (same bytes), "same" (score >= 0.96:
the same photo, lightly edited) or "similar" (at or above the threshold).

--all prints every near-duplicate pair of the vault mounted at MOUNTPOINT (default: the mount
holding the current directory). --reindex recomputes every embedding (after a model change;
a changed model is also picked up automatically at mount) and shows a progress bar.
--failed lists the files that should be images but could not be embedded (a corrupt or
truncated image, an image too large to decode, a .jpg that is not an image), with the reason;
imgfs status counts them.

--mark A B records that A and B are not near-duplicates (as "not a duplicate" in imgfs
review): .similar/, imgfs similar and imgfs review stop showing that pair. Marks are kept in
the vault's encrypted metadata and follow the photos' contents (docs/similar.md, "Marks").
--unmark A B removes the mark between A and B; --unmark A removes every mark of A; with
more paths, every mark between two of them. --marks lists the marks of a mount.

The default threshold is the mount's (imgfs mount --similarity-threshold; by default chosen
from the library's size at mount so that fewer than 10 false matches are expected: 0.94 up
to 10,000 photos, 0.956 at 100,000, plus pairs from a floor of 0.88-0.93 that pass the
verification stage; docs/similar.md). An explicit --threshold lists every pair at or above
it, unverified. The same matches appear as symlinks under
MOUNTPOINT/.similar/, with the score in the xattr user.imgfs.similarity.

Exit codes: 0 ok (also when nothing matches), 1 a path is not an indexed image of a mount,
2 usage.`,
	Example: `  imgfs similar ~/photos/2024/IMG_0042.jpg
  imgfs similar --threshold 0.7 --top 5 --json ~/photos/2024/*.jpg
  imgfs similar --all --json ~/photos
  imgfs similar --reindex ~/photos
  imgfs similar --mark ~/photos/a.jpg ~/photos/b.jpg
  imgfs similar --unmark ~/photos/a.jpg`,
	RunE: runSimilar,
}

func init() {
	f := similarCmd.Flags()
	f.Float64Var(&similarFlags.threshold, "threshold", 0, "similarity threshold in (0, 1] (default: the mount's)")
	f.IntVar(&similarFlags.top, "top", 0, "print at most K matches per path (0: all)")
	f.BoolVar(&similarFlags.json, "json", false, "print JSON")
	f.BoolVar(&similarFlags.all, "all", false, "print every near-duplicate pair of the mount")
	f.BoolVar(&similarFlags.reindex, "reindex", false, "recompute every embedding of the mount (progress bar)")
	f.BoolVar(&similarFlags.mark, "mark", false, "mark the two PATHs as not near-duplicates")
	f.BoolVar(&similarFlags.unmark, "unmark", false, "remove the not-a-duplicate marks of PATHs")
	f.BoolVar(&similarFlags.marks, "marks", false, "list the not-a-duplicate marks of a mount")
	f.BoolVar(&similarFlags.failed, "failed", false, "list the files of the mount that could not be embedded, and why")
	rootCmd.AddCommand(similarCmd)

}

// mountOfArgs returns the imgfs mount holding the optional MOUNTPOINT argument (default: the
// current directory).
func mountOfArgs(args []string) (string, error) {
	p := "."
	if len(args) == 1 {
		p = args[0]
	}
	return findMount(absPath(p))
}

// absPath makes p absolute, resolving symlinks of its directory (not of p itself, which
// is the photo asked about).
func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	dir, base := filepath.Split(a)
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		a = filepath.Join(d, base)
	}
	return a
}

func runSimilar(cmd *cobra.Command, args []string) error {
	out := cmd.OutOrStdout()
	if similarFlags.threshold < 0 || similarFlags.threshold > 1 {
		return usageErrorf("--threshold %v: want a value in (0, 1]", similarFlags.threshold)
	}
	if similarFlags.top < 0 {
		return usageErrorf("--top %d: want K >= 0", similarFlags.top)
	}
	ctx := cmd.Context()
	switch {
	case similarFlags.mark || similarFlags.unmark || similarFlags.marks:
		return runMarks(cmd, args)
	case similarFlags.failed:
		return runSimilarFailed(cmd, args)
	case similarFlags.reindex:
		if len(args) != 1 {
			return usageErrorf("--reindex takes one MOUNTPOINT")
		}
		return runReindex(ctx, absPath(args[0]))
	case similarFlags.all:
		if len(args) > 1 {
			return usageErrorf("--all takes at most one MOUNTPOINT")
		}
		mp, err := mountOfArgs(args)
		if err != nil {
			return err
		}
		var resp similar.QueryResponse
		req := similar.QueryRequest{All: true, Threshold: float32(similarFlags.threshold)}
		if err := control.CallContext(ctx, mp, similar.OpSimilar, req, &resp); err != nil {
			return ctlErr(mp, err)
		}
		for i := range resp.Pairs {
			resp.Pairs[i].A = filepath.Join(mp, resp.Pairs[i].A)
			resp.Pairs[i].B = filepath.Join(mp, resp.Pairs[i].B)
		}
		if similarFlags.json {
			return writeJSON(out, resp)
		}
		for _, p := range resp.Pairs {
			fmt.Fprintf(out, "%s  %-9s  %s  %s\n", similar.FormatScore(p.Score), p.Tier, p.A, p.B)
		}
		if resp.Backlog > 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "imgfs: %d files are still being indexed (imgfs sync %s waits for them)\n", resp.Backlog, mp)
		}
		return nil
	}
	if len(args) == 0 {
		return usageErrorf("give at least one PATH (or --all)")
	}
	// Group the paths by mount, keeping the order of the arguments.
	type item struct{ arg, mp, rel string }
	var items []item
	byMount := map[string][]int{}
	var order []string
	var errs []string
	for _, a := range args {
		abs := absPath(a)
		mp, err := findMount(abs)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		rel, _ := filepath.Rel(mp, abs)
		if _, ok := byMount[mp]; !ok {
			order = append(order, mp)
		}
		byMount[mp] = append(byMount[mp], len(items))
		items = append(items, item{a, mp, filepath.ToSlash(rel)})
	}
	results := make([]similar.QueryResult, len(items))
	var th float32
	backlog := 0
	for _, mp := range order {
		var req similar.QueryRequest
		for _, i := range byMount[mp] {
			req.Paths = append(req.Paths, items[i].rel)
		}
		req.Threshold, req.Top = float32(similarFlags.threshold), similarFlags.top
		var resp similar.QueryResponse
		err := control.CallContext(ctx, mp, similar.OpSimilar, req, &resp)
		var re *control.RemoteError
		if err != nil && (errors.Is(err, control.ErrNoDaemon) || errors.As(err, &re) && strings.Contains(re.Msg, "unknown op")) {
			// No daemon op: read .similar/ through the mount instead.
			resp, err = similarViaMount(mp, req)
		}
		if err != nil {
			return ctlErr(mp, err)
		}
		th = resp.Threshold
		backlog += resp.Backlog
		for k, i := range byMount[mp] {
			r := resp.Results[k]
			r.Path = filepath.Join(mp, r.Path)
			for j := range r.Matches {
				r.Matches[j].Path = filepath.Join(mp, r.Matches[j].Path)
			}
			results[i] = r
		}
	}
	for _, r := range results {
		if r.Error != "" {
			errs = append(errs, r.Path+": "+r.Error)
		}
	}
	if similarFlags.json {
		if err := writeJSON(out, similar.QueryResponse{Threshold: th, Results: results, Backlog: backlog}); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			if r.Error != "" {
				continue
			}
			if len(results) > 1 {
				fmt.Fprintf(out, "%s:\n", r.Path)
			}
			for _, m := range r.Matches {
				fmt.Fprintf(out, "%s  %-9s  %s\n", similar.FormatScore(m.Score), m.Tier, m.Path)
			}
		}
	}
	if backlog > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "imgfs: %d files are still being indexed; results may be incomplete (imgfs sync waits for them)\n", backlog)
	}
	if len(errs) > 0 {
		for _, e := range errs[:len(errs)-1] {
			fmt.Fprintln(cmd.ErrOrStderr(), "imgfs: "+e)
		}
		return errors.New(errs[len(errs)-1])
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// similarViaMount answers a query by reading MOUNT/.similar/REL/ (symlinks and the
// user.imgfs.similarity xattr): for mounts whose daemon does not serve the op.
func similarViaMount(mp string, req similar.QueryRequest) (similar.QueryResponse, error) {
	resp := similar.QueryResponse{Threshold: req.Threshold}
	for _, rel := range req.Paths {
		r := similar.QueryResult{Path: rel, Matches: []similar.Match{}}
		dir := filepath.Join(mp, ".similar", rel)
		ents, err := os.ReadDir(dir)
		if err != nil {
			r.Error = "not an indexed image: " + err.Error()
			resp.Results = append(resp.Results, r)
			continue
		}
		// Scores and order: the directory's xattr, one "score<TAB>name" line per entry.
		buf := make([]byte, 1<<20)
		n, err := unix.Getxattr(dir, similar.XattrSimilarity, buf)
		if err != nil {
			r.Error = "reading scores: " + err.Error()
			resp.Results = append(resp.Results, r)
			continue
		}
		_ = ents
		for _, l := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n") {
			f := strings.SplitN(l, "\t", 2)
			if len(f) != 2 {
				continue
			}
			s, _ := strconv.ParseFloat(f[0], 32)
			if req.Threshold > 0 && float32(s) < req.Threshold {
				continue
			}
			target, err := os.Readlink(filepath.Join(dir, f[1]))
			if err != nil {
				continue
			}
			p, _ := filepath.Rel(mp, filepath.Join(dir, target))
			tier := similar.Tier(float32(s), false)
			if s >= 1 {
				tier = "identical"
			}
			r.Matches = append(r.Matches, similar.Match{Path: filepath.ToSlash(p), Score: float32(s), Tier: tier})
			if req.Top > 0 && len(r.Matches) == req.Top {
				break
			}
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func runReindex(ctx context.Context, p string) error {
	mp, err := findMount(p)
	if err != nil {
		return err
	}
	var rr similar.ReindexResponse
	if err := control.CallContext(ctx, mp, similar.OpReindex, nil, &rr); err != nil {
		return ctlErr(mp, err)
	}
	bar := newProgress(int64(rr.Queued), "re-embedding", false)
	defer bar.Finish()
	shown := int64(0)
	for {
		var st similar.Stats
		if err := control.CallContext(ctx, mp, similar.OpStatus, nil, &st); err != nil {
			return ctlErr(mp, err)
		}
		done := int64(rr.Queued - min(st.Backlog, rr.Queued))
		bar.Add(done - shown)
		shown = done
		if st.Backlog == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted; re-embedding goes on in the mount's daemon (imgfs status %s shows the backlog)", mp)
		case <-time.After(200 * time.Millisecond):
		}
	}
	bar.Finish()
	var st similar.Stats
	if err := control.CallContext(ctx, mp, similar.OpStatus, nil, &st); err != nil {
		return ctlErr(mp, err)
	}
	fmt.Fprintf(os.Stderr, "imgfs: re-embedded %d files (%d embeddings, model %s)\n", rr.Queued, st.Embeddings, st.Model)
	return nil
}
