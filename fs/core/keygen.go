package core

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/dedup/keyring"
)

// The key generation of a cache (docs/core.md, "Key generations"). Every record of a cache
// is sealed under K_local, a subkey of the master key, so after `imgfs rekey` a cache of
// the old keys can no longer be read. The file keyGenFile (plain text: the number is not
// secret) records the newest vault header generation the cache has seen; it is the header's
// rollback anchor, as the root anchor in state.db is the roots'.
//
//   - generation served < recorded: the store serves an older header: ErrRollback.
//   - generation served > recorded (the vault was rekeyed): a cache with no work of its own
//     is emptied and rebuilt from the store; a cache with work that is not in the store is
//     refused with ErrStaleCache (its records cannot be read under the new keys).
//
// A cache from before header generations has no file and counts as generation 0.

const keyGenFile = "keygen"

// ErrStaleCache: the cache was written under keys a rekey replaced and holds work that is
// not in the store.
var ErrStaleCache = errors.New("this cache was written under the vault's old key (before imgfs rekey) and holds work that is not in the store")

func readKeyGen(dir string) (uint64, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, keyGenFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, localErr("reading the cache's key generation", err)
	}
	s, ok := strings.CutPrefix(strings.TrimSuffix(string(b), "\n"), "imgfs key generation ")
	g, perr := strconv.ParseUint(s, 10, 64)
	if !ok || perr != nil {
		return 0, false, errnoErr(syscall.EIO, "cache %s: malformed %s file", dir, keyGenFile)
	}
	return g, true, nil
}

// writeKeyGen replaces the file atomically (temp, fsync, rename, fsync of the directory).
func writeKeyGen(dir string, gen uint64) error {
	tmp := filepath.Join(dir, keyGenFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return localErr("writing the cache's key generation", err)
	}
	_, err = fmt.Fprintf(f, "imgfs key generation %d\n", gen)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, keyGenFile))
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(dir); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return localErr("writing the cache's key generation", err)
	}
	return nil
}

// checkKeyGeneration runs first in Open (see above). A read-only open records nothing.
func checkKeyGeneration(dir string, gen uint64, ro bool, log *slog.Logger) error {
	seen, ok, err := readKeyGen(dir)
	if err != nil {
		return err
	}
	if err := keyring.CheckGeneration(seen, gen); err != nil {
		return fmt.Errorf("core: %w: %w (%w)", ErrRollback, err, syscall.EIO)
	}
	if ok && seen == gen {
		return nil
	}
	db := filepath.Join(dir, "state.db")
	if _, err := os.Stat(db); err == nil && seen < gen {
		why, err := keylessLocalWork(db)
		if err != nil {
			return err
		}
		if why != "" {
			return fmt.Errorf("core: %w (%s): the vault was rekeyed since (key generation %d, this cache has %d), and it cannot be read with the new key; "+
				"move %s away to mount from the store (its unsynced changes are lost) (%w)", ErrStaleCache, why, gen, seen, dir, syscall.EIO)
		}
		if log == nil {
			log = slog.Default()
		}
		log.Warn("core: the vault was rekeyed (imgfs rekey): rebuilding this cache from the store", "cache", dir, "generation", gen)
		for _, d := range []string{"state.db", "spool", "obj", "tmp"} {
			if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
				return localErr("emptying a cache of the old key", err)
			}
		}
	}
	if ro && !ok && gen == 0 {
		return nil // nothing to record: an old cache opened read-only stays as it was
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return localErr("creating cache directory", err)
	}
	return writeKeyGen(dir, gen)
}

// keylessLocalWork opens a cache's bbolt read-only and says what work of its own it holds
// (localWorkTx), without any key.
func keylessLocalWork(path string) (string, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return "", errnoErr(syscall.EBUSY, "cache directory %s is in use by another imgfs process", filepath.Dir(path))
	}
	if err != nil {
		return "", localErr("opening local state", err)
	}
	defer db.Close()
	why := ""
	err = db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bPending, bInodes, bOrphans} {
			if tx.Bucket(b) == nil {
				return nil // never initialised: nothing of its own
			}
		}
		why = localWorkTx(tx)
		return nil
	})
	return why, err
}
