// Command scalegen builds a vault of many small files for bench/scale.sh: it opens the vault
// through fs/vault and fs/core (no FUSE mount, so building a million files takes minutes, not
// hours) and writes -files files of 0-4 KiB into directories of -per-dir files each
// (d00000/f00000.bin ...). Contents come from a pool of -distinct blobs, so the store holds
// few content objects while the namespace (inodes, entries, tree shards) has its full size:
// the scale benchmark measures metadata cost, not the disk. With -plain DIR it writes the
// same tree into a plain directory instead (for the gocryptfs comparison).
//
//	IMGFS_PASSPHRASE_FILE=pass go run ./bench/scalegen -store S -cache C -files 100000
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/fs/core"
	"github.com/imgfs/imgfs/fs/vault"
)

func main() {
	store := flag.String("store", "", "local store directory (imgfs init done)")
	cache := flag.String("cache", "", "cache directory for the build (thrown away afterwards)")
	plain := flag.String("plain", "", "write the tree into this plain directory instead of a vault")
	from := flag.Int("from", 0, "files already in the vault (grow it from -from to -files)")
	files := flag.Int("files", 10000, "number of files")
	perDir := flag.Int("per-dir", 1000, "files per directory")
	distinct := flag.Int("distinct", 256, "distinct contents (0-4 KiB each)")
	syncEvery := flag.Int("sync-every", 50000, "commit a root every this many files")
	flag.Parse()

	pool := make([][]byte, *distinct)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range pool {
		b := make([]byte, rng.IntN(4097))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		pool[i] = b
	}
	name := func(i int) (string, string) {
		return fmt.Sprintf("d%05d", i / *perDir), fmt.Sprintf("f%05d.bin", i%*perDir)
	}
	start := time.Now()
	var err error
	if *plain != "" {
		err = buildPlain(*plain, *files, pool, name)
	} else {
		err = buildVault(*store, *cache, *from, *files, *syncEvery, pool, name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scalegen:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "scalegen: files %d to %d in %.1f s\n", *from, *files, time.Since(start).Seconds())
}

func buildPlain(root string, n int, pool [][]byte, name func(int) (string, string)) error {
	for i := 0; i < n; i++ {
		d, f := name(i)
		dir := filepath.Join(root, d)
		if i == 0 || f == "f00000.bin" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(dir, f), pool[i%len(pool)], 0o644); err != nil {
			return err
		}
	}
	return nil
}

func buildVault(store, cache string, from, n, syncEvery int, pool [][]byte, name func(int) (string, string)) error {
	ctx := context.Background()
	if store == "" || cache == "" {
		return fmt.Errorf("-store and -cache are needed")
	}
	v, err := vault.Unlock(ctx, vault.Config{URL: store, Passphrase: func(context.Context, backend.Store) ([]byte, error) {
		b, err := os.ReadFile(os.Getenv("IMGFS_PASSPHRASE_FILE"))
		return bytes.TrimRight(b, "\n"), err
	}})
	if err != nil {
		return err
	}
	if err := v.Open(ctx, core.Options{CacheDir: cache, CommitDelay: time.Hour, RefreshInterval: -1}); err != nil {
		v.Close()
		return err
	}
	fsys := v.FS
	var dir core.Ino
	for i := from; i < n; i++ {
		d, f := name(i)
		if i == from || f == "f00000.bin" {
			a, err := fsys.Mkdir(core.RootIno, d, 0o755)
			if errors.Is(err, syscall.EEXIST) {
				a, err = fsys.Lookup(core.RootIno, d)
			}
			if err != nil {
				return err
			}
			dir = a.Ino
		}
		_, h, err := fsys.CreateFlags(dir, f, 0o644, os.O_RDWR|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return err
		}
		if b := pool[i%len(pool)]; len(b) > 0 {
			if _, err := h.WriteAt(b, 0); err != nil {
				return err
			}
		}
		if err := h.Release(); err != nil {
			return err
		}
		if (i+1)%syncEvery == 0 {
			if err := fsys.Sync(ctx); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "scalegen: %d files\n", i+1)
		}
	}
	if err := fsys.Sync(ctx); err != nil {
		return err
	}
	return v.Close()
}
