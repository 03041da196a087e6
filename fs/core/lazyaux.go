package core

import (
	"slices"

	bolt "go.etcd.io/bbolt"
)

// updateAux is update for a change of aux table table. A table of Options.LazyAux (the
// near-duplicate indexer's embeddings, docs/similar.md) does not start a root commit of its
// own: the change is durable in the local journal at once and marked for the next root,
// which a seal, a namespace change, a merge, Sync or Close starts.
func (f *FS) updateAux(table string, fn func(tx *bolt.Tx) error) error {
	if !slices.Contains(f.opts.LazyAux, table) {
		return f.update(fn)
	}
	return f.writeLocked(func(tx *bolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return change(tx)
	})
}
