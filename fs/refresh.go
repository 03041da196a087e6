package fs

import (
	"errors"

	"bazil.org/fuse"

	"github.com/imgfs/imgfs/fs/core"
)

// invalidate drops the kernel's cached attributes, data and names for what a merge of other
// devices' roots changed (docs/core.md, "Several devices"), so ls, stat and cat show the
// merged tree at once instead of after the one-minute cache times. It runs the calls on a
// goroutine: a merge can happen inside a FUSE request (Fsync commits), and invalidating
// synchronously from a handler can deadlock on the kernel's inode lock.
// Data of files with open handles is not invalidated (an in-flight read holds the page
// lock); their attributes are.
func (f *FS) invalidate(ch core.Changes) {
	if f.srv == nil {
		return
	}
	type inv struct {
		n    *Node
		data bool
	}
	type ent struct {
		parent *Node
		name   string
	}
	var nodes []inv
	var ents []ent
	f.mu.Lock()
	for _, ino := range ch.Inodes {
		if n := f.nodes[ino]; n != nil {
			n.mu.Lock()
			open := len(n.handles) > 0
			n.mu.Unlock()
			nodes = append(nodes, inv{n, !open})
		}
	}
	for _, e := range ch.Entries {
		if p := f.nodes[e.Parent]; p != nil {
			ents = append(ents, ent{p, e.Name})
		}
	}
	f.mu.Unlock()
	if len(nodes) == 0 && len(ents) == 0 {
		return
	}
	go func() {
		for _, e := range ents {
			f.ignoreNotCached("invalidate entry", f.srv.InvalidateEntry(e.parent, e.name))
		}
		for _, x := range nodes {
			if x.data {
				f.ignoreNotCached("invalidate data", f.srv.InvalidateNodeData(x.n))
			} else {
				f.ignoreNotCached("invalidate attributes", f.srv.InvalidateNodeAttr(x.n))
			}
		}
	}()
}

func (f *FS) ignoreNotCached(op string, err error) {
	if err != nil && !errors.Is(err, fuse.ErrNotCached) {
		f.log.Debug("imgfs: "+op, "err", err)
	}
}
