package main

// imgfs review: the local near-duplicate review page (fs/review, docs/review.md).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs/control"
	"github.com/imgfs/imgfs/fs/review"
	"github.com/imgfs/imgfs/fs/similar"
)

func init() {
	var noBrowser bool
	cmd := &cobra.Command{
		Use:   "review [--no-browser] [MOUNTPOINT]",
		Short: "Review near-duplicates in a local web page: keep one, trash the others, or mark \"not a duplicate\"",
		Long: `Serves a page on 127.0.0.1 (a random port, with a random token in the URL) that shows the
near-duplicate groups of the vault mounted at MOUNTPOINT (default: the mount holding the
current directory), best-scoring first, with thumbnails, sizes, pixel dimensions, EXIF
dates, scores and tiers. Per group you can keep one photo and move the others to
MOUNTPOINT/.imgfs-trash/<time>/ (mv them back to restore), or mark the group or a pair
"not a duplicate" (undo with imgfs similar --unmark). It prints the URL and opens it with
xdg-open when there is one. It stops on Ctrl-C, SIGTERM, or when the mount goes away.
Thumbnails are made in memory from the mount and never written to disk. See docs/review.md.`,
		Example: `  imgfs review ~/photos
  imgfs review --no-browser ~/photos   # then open the printed URL`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mp, err := mountOfArgs(args)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			var st similar.Stats
			if err := control.CallContext(ctx, mp, similar.OpStatus, nil, &st); err != nil {
				return fmt.Errorf("%s has no near-duplicate index (mounted with --no-similar, or no model): %w", mp, ctlErr(mp, err))
			}
			srv, err := review.New(review.Config{Mount: mp, Backend: review.ControlBackend(mp), Logger: cliLogger()})
			if err != nil {
				return err
			}
			ln, err := srv.Listen()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imgfs review of %s: open\n    %s\n(Ctrl-C stops it)\n", mp, srv.URL())
			if !noBrowser {
				openBrowser(srv.URL())
			}
			go watchMount(ctx, mp, cancel)
			err = srv.Serve(ctx, ln)
			if cmd.Context().Err() == nil && ctx.Err() != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "imgfs: %s is not mounted any more; review stopped\n", mp)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "only print the URL, do not open a browser")
	rootCmd.AddCommand(cmd)
}

// openBrowser starts xdg-open (when there is one and a display) and does not wait for it.
func openBrowser(url string) {
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return
	}
	p, err := exec.LookPath("xdg-open")
	if err != nil {
		return
	}
	c := exec.Command(p, url)
	if c.Start() == nil {
		go c.Wait()
	}
}

// watchMount cancels when mp is no longer an imgfs mount (checked every second).
// A busy daemon (a status call timing out) does not stop the review.
func watchMount(ctx context.Context, mp string, cancel func()) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Gone from the mount table, or a dead mount whose daemon no longer answers.
			m, err := findMount(mp)
			gone := err != nil || m != mp
			if !gone {
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				gone = errors.Is(control.CallContext(cctx, mp, similar.OpStatus, nil, nil), control.ErrNoDaemon)
				ccancel()
			}
			if gone {
				cancel()
				return
			}
		}
	}
}
