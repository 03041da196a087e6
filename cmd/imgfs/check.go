package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/maint"
	"github.com/imgfs/imgfs/fs/core"
)

func init() {
	var cacheDir, fromDir string
	var readData, repair bool
	cmd := &cobra.Command{
		Use:   "check [--store URL] [--read-data] [--cache DIR] [--repair [--from DIR]]",
		Short: "Verify every stored object and every reference of the vault",
		Long: `Lists every object in the store and verifies that each content, metadata and key-slot
object hashes (SHA-256) to its name, that the newest root pointer decrypts, that every
object the current root references exists, and counts how many files reference each
content object. --read-data also decrypts every file (slow: reads everything).
Unreferenced objects are reported but are not errors (imgfs gc removes them).
--repair restores corrupt or missing content objects from a good copy: the read cache of
the cache directory, or (--from DIR) an original file under DIR that encrypts to the same
object. Only bytes that hash to the object's name are stored. Each object is then listed
as "repaired NAME from SOURCE" or "lost NAME: ..." with the files that use it, and the
store is checked again.
Exits 0 when nothing is (left) wrong and 5 when a problem was found; each problem is one
line on stdout. Opens the namespace read-only.`,
		Example: `  imgfs check --store /mnt/nas/vault
  imgfs check --store s3:https://s3.example.net/bucket/photos --read-data
  imgfs check --store /mnt/nas/vault --repair --from ~/Pictures`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fromDir != "" && !repair {
				return usageErrorf("--from needs --repair")
			}
			s, err := openSession(cmd, cacheDir, true)
			if err != nil {
				return err
			}
			defer s.Close()
			return runCheck(cmd.Context(), cmd.OutOrStdout(), s, readData, repair, fromDir)
		},
	}
	cmd.Flags().StringVar(&cacheDir, "cache", "", cacheFlagHelp)
	cmd.Flags().BoolVar(&readData, "read-data", false, "also decrypt and verify the content of every file")
	cmd.Flags().BoolVar(&repair, "repair", false, "restore corrupt or missing content objects from the cache or --from")
	cmd.Flags().StringVar(&fromDir, "from", "", "with --repair: a folder of original files to restore content objects from")
	rootCmd.AddCommand(cmd)
}

func runCheck(ctx context.Context, out io.Writer, s *session, readData, repair bool, fromDir string) error {
	live, err := s.fs.ReferencedObjects(ctx)
	if err != nil {
		return fmt.Errorf("reading the current root: %w", err)
	}
	refs := map[string]int{}
	var files []core.Ino
	var fileBytes int64
	err = s.fs.ForEachContent(func(ino core.Ino, c dedup.Content) error {
		for i := range c.Len() { // every chunk of the file's chunk list
			refs[dedup.ContentName(c.ChunkLocator(i))]++
		}
		files = append(files, ino)
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing files: %w", err)
	}
	var prog *progress
	opts := maint.CheckOptions{
		Live: live,
		Refs: refs,
		ListDone: func(objects int, total int64) {
			prog = newProgress(total, "hashing objects", true)
		},
		Progress: func(n int64) { prog.Add(n) },
	}
	if readData {
		for _, ino := range files {
			if a, err := s.fs.GetAttr(ino); err == nil {
				fileBytes += a.Size
			}
		}
		opts.ReadData = func(ctx context.Context, data func(int64), problem func(string, error)) error {
			prog.Finish()
			dp := newProgress(fileBytes, "decrypting files", true)
			defer dp.Finish()
			buf := make([]byte, 1<<20)
			for _, ino := range files {
				if err := ctx.Err(); err != nil {
					return err
				}
				n, err := readWholeFile(ctx, s.fs, ino, buf, dp)
				data(n)
				if err != nil {
					p, perr := s.fs.Path(ino)
					if perr != nil {
						p = fmt.Sprintf("inode %d", ino)
					}
					problem(p, err)
				}
			}
			return nil
		}
	}
	rep, err := maint.Check(ctx, s.store, s.keys, opts)
	if prog != nil {
		prog.Finish()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "objects: %d (%d bytes): %d content, %d metadata, %d roots, %d key slots, %d other\n",
		rep.Objects, rep.Bytes, rep.ContentObjects, rep.MetaObjects, rep.Roots, rep.KeySlots, rep.Other)
	refTotal := 0
	for _, n := range refs {
		refTotal += n
	}
	fmt.Fprintf(out, "files: %d referencing %d distinct content objects; live set: %d objects; unreferenced: %d\n",
		refTotal, len(refs), rep.Referenced, len(rep.Unreferenced))
	if readData {
		fmt.Fprintf(out, "data: %d files, %d bytes decrypted\n", len(files), rep.DataBytes)
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(out, p.String())
	}
	if repair && !rep.OK() {
		lost, err := repairContent(ctx, out, s, rep, fromDir)
		if err != nil {
			return err
		}
		opts.ReadData, opts.ListDone, opts.Progress = nil, nil, nil
		if rep, err = maint.Check(ctx, s.store, s.keys, opts); err != nil {
			return err
		}
		fmt.Fprintf(out, "after repair: %d problem(s), %d content object(s) lost\n", len(rep.Problems), lost)
		for _, p := range rep.Problems {
			fmt.Fprintln(out, p.String())
		}
	}
	if !rep.OK() {
		return withCode(exitIntegrity, fmt.Errorf("check found %d problem(s), listed on stdout; restore the objects from a backup or re-import the files they belong to", len(rep.Problems)))
	}
	fmt.Fprintln(out, "no problems found")
	return nil
}

// repairContent restores the damaged content objects of rep (maint.Repair), prints one line
// per damaged object and returns how many it could not repair.
func repairContent(ctx context.Context, out io.Writer, s *session, rep *maint.Report, fromDir string) (int, error) {
	res, err := maint.Repair(ctx, s.store, s.keys, rep, maint.RepairOptions{
		Files: func(fn func(dedup.Content, func() string) error) error {
			return s.fs.ForEachContent(func(ino core.Ino, c dedup.Content) error {
				return fn(c, func() string {
					p, err := s.fs.Path(ino)
					if err != nil {
						p = fmt.Sprintf("inode %d", ino)
					}
					return p
				})
			})
		},
		Cached: s.fs.CachedObject,
		From:   fromDir,
		Logger: cliLogger(),
	})
	if err != nil {
		return 0, err
	}
	lost := 0
	for _, r := range res {
		switch {
		case r.From != "":
			fmt.Fprintf(out, "repaired %s from %s\n", r.Name, r.From)
		case len(r.Paths) == 0:
			lost++
			fmt.Fprintf(out, "lost %s: no good copy, and no file of the current tree uses it\n", r.Name)
		default:
			lost++
			fmt.Fprintf(out, "lost %s: no good copy of %s (give the original files with --from DIR, or restore the object from a backup)\n",
				r.Name, strings.Join(r.Paths, ", "))
		}
	}
	return lost, nil
}

// readWholeFile reads a vault file to the end (every byte verified by core) and discards it.
func readWholeFile(ctx context.Context, fsys *core.FS, ino core.Ino, buf []byte, prog *progress) (int64, error) {
	a, err := fsys.GetAttr(ino)
	if err != nil {
		return 0, err
	}
	h, err := fsys.OpenFile(ino, os.O_RDONLY)
	if err != nil {
		return 0, err
	}
	defer h.Release()
	var off int64
	for off < a.Size {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		want := min(int64(len(buf)), a.Size-off)
		n, err := h.ReadAt(buf[:want], off)
		off += int64(n)
		prog.Add(int64(n))
		if err == io.EOF && off < a.Size {
			return off, fmt.Errorf("ends at %d of %d bytes", off, a.Size)
		}
		if err != nil && err != io.EOF {
			return off, err
		}
		if n == 0 && err == nil {
			return off, fmt.Errorf("short read at %d", off)
		}
	}
	return off, nil
}
