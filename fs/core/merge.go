package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/fs/core/rootsync"
)

// Several devices on one vault (docs/core.md, "Several devices"): when the store has roots
// newer than this cache's anchor, the working copy becomes the 3-way merge (rootsync.Merge)
// of base = the anchor's tree, theirs = the newest root's tree, ours = the working copy
// (with its unsealed spools, open files and journal). The anchor then moves to the newest
// root and the next commit writes a root on top of it.

// Inode numbers: each cache allocates in its own range, ino = slot<<slotShift | counter,
// with a random slot (20 bits, drawn once per cache), so two devices never create the same
// number (a collision of slots, about 1 in a million per pair of devices, is still merged
// correctly: theirs' inode gets a new number). Inodes of caches older than this rule have
// slot 0.
const (
	slotShift = 40
	slotBits  = 20
	mSlot     = "slot"
)

func (f *FS) allocIno(tx *bolt.Tx) (Ino, error) {
	slot := getU64(tx, mSlot)
	if slot == 0 {
		var b [8]byte
		for slot == 0 {
			rand.Read(b[:])
			slot = binary.BigEndian.Uint64(b[:]) & (1<<slotBits - 1)
		}
		if err := putU64(tx, mSlot, slot); err != nil {
			return 0, err
		}
	}
	c, err := f.nextID(tx, mNextIno)
	if err != nil {
		return 0, err
	}
	if c >= 1<<slotShift {
		return 0, errnoErr(syscall.ENOSPC, "inode numbers of this cache are exhausted") // ENOSPC
	}
	return Ino(slot<<slotShift | c), nil
}

// ownCounter raises the inode counter above every inode of this cache's slot in inos.
func ownCounter(tx *bolt.Tx, inos []Ino) error {
	slot, c := getU64(tx, mSlot), getU64(tx, mNextIno)
	if c >= 1<<slotShift { // a counter from before slots held a max over all inodes
		c = 0
	}
	for _, ino := range inos {
		if uint64(ino)>>slotShift == slot {
			c = max(c, uint64(ino)&(1<<slotShift-1))
		}
	}
	return putU64(tx, mNextIno, c)
}

// side is one root's namespace and aux tables.
type side struct {
	seq   uint64
	hash  dedup.Locator
	root  *rootRec
	t     *tree
	nodes map[Ino]*treeInode
	aux   map[string]map[string][]byte // table -> key -> value
}

func (f *FS) loadSide(ctx context.Context, seq uint64) (*side, error) {
	s := &side{seq: seq, nodes: map[Ino]*treeInode{}, aux: map[string]map[string][]byte{}, t: &tree{}}
	if seq == 0 {
		return s, nil
	}
	r, h, err := f.loadRoot(ctx, seq)
	if err != nil {
		return nil, err
	}
	s.root, s.hash = r, h
	if s.t, err = f.loadTree(ctx, r); err != nil {
		return nil, err
	}
	if err := checkTree(s.t); err != nil {
		return nil, err
	}
	for i := range s.t.Inodes {
		s.nodes[s.t.Inodes[i].Ino] = &s.t.Inodes[i]
	}
	for _, a := range r.Aux {
		plain, err := f.loadMeta(ctx, "aux", a.Loc)
		if err != nil {
			return nil, err
		}
		at, err := decodeAux(plain)
		table, _, ok := splitUnit(a.Table)
		if err != nil || at.Table != a.Table || !ok {
			return nil, errnoErr(syscall.EIO, "aux object %s is malformed", a.Loc)
		}
		m := s.aux[table]
		if m == nil {
			m = map[string][]byte{}
			s.aux[table] = m
		}
		for _, kv := range at.Entries {
			m[string(kv[0])] = kv[1]
		}
	}
	return s, nil
}

// contentID is the identity of a file's current content for the merge: its sealed object
// or, when newer data waits in the spool, that spool (unique to this cache).
func contentID(n *inode) string {
	switch {
	case !n.isReg():
		return ""
	case n.Spool != 0:
		return fmt.Sprintf("spool:%d", n.Spool)
	case n.HasRef:
		id := n.Ref.ID()
		return fmt.Sprintf("ref:%x:%d", id[:], n.Ref.Size())
	}
	return "empty"
}

// metaID is the identity of everything else the merge compares (not links, size or atime).
func metaID(n *inode, xs []xattr) string {
	m := *n
	m.Nlink, m.Parent, m.Name, m.Atime, m.Size, m.Spool, m.HasRef = 0, 0, "", 0, 0, 0, false
	m.Ref = dedup.Content{}
	var e encoder
	m.encode(&e, false)
	sorted := append([]xattr(nil), xs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, x := range sorted {
		e.str(x.Name)
		e.bytes(x.Value)
	}
	return string(e.b)
}

func syncNode(ti *treeInode) rootsync.Node {
	k := rootsync.File
	switch {
	case ti.Node.isDir():
		k = rootsync.Dir
	case ti.Node.isSymlink():
		k = rootsync.Symlink
	}
	return rootsync.Node{Kind: k, Content: contentID(&ti.Node), Meta: metaID(&ti.Node, ti.Xattrs), Mtime: ti.Node.Mtime}
}

func (s *side) syncTree() *rootsync.Tree {
	t := rootsync.NewTree()
	for ino, ti := range s.nodes {
		t.Nodes[uint64(ino)] = syncNode(ti)
	}
	for _, d := range s.t.Dirents {
		t.Links[uint64(d.Ino)] = append(t.Links[uint64(d.Ino)], rootsync.Link{Parent: uint64(d.Parent), Name: d.Name})
	}
	return t
}

// oursSide reads the working copy (every inode, with spools and orphans) inside tx.
func (f *FS) oursSide(tx *bolt.Tx) (*side, error) {
	s := &side{nodes: map[Ino]*treeInode{}, t: &tree{}, aux: map[string]map[string][]byte{}}
	xs := map[Ino][]xattr{}
	err := tx.Bucket(bXattrs).ForEach(func(k, v []byte) error {
		x, err := f.decodeXattr(k, v)
		if err != nil {
			return err
		}
		xs[Ino(be64u(k[:8]))] = append(xs[Ino(be64u(k[:8]))], x)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = tx.Bucket(bInodes).ForEach(func(k, _ []byte) error {
		ino := Ino(be64u(k))
		n, err := f.getInode(tx, ino)
		if err != nil {
			return err
		}
		s.t.Inodes = append(s.t.Inodes, treeInode{Ino: ino, Node: n, Xattrs: xs[ino]})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range s.t.Inodes {
		s.nodes[s.t.Inodes[i].Ino] = &s.t.Inodes[i]
	}
	err = tx.Bucket(bDirents).ForEach(func(k, v []byte) error {
		de, err := f.openDirent(k, v)
		if err != nil {
			return err
		}
		s.t.Dirents = append(s.t.Dirents, treeDirent{Parent: Ino(be64u(k[:8])), Name: de.Name, Ino: de.Ino})
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = tx.Bucket(bAux).ForEach(func(name, _ []byte) error {
		b := tx.Bucket(bAux).Bucket(name)
		if b == nil {
			return nil
		}
		table := string(name)
		m := map[string][]byte{}
		s.aux[table] = m
		return b.ForEach(func(k, v []byte) error {
			key, val, err := f.openAux(table, k, v)
			if err != nil {
				return err
			}
			m[string(key)] = val
			return nil
		})
	})
	return s, err
}

// pinnedLocked: open files with writes not yet flushed (f.mu held). The merge keeps them.
func (f *FS) pinnedLocked() map[uint64]bool {
	p := map[uint64]bool{}
	for ino, of := range f.open {
		of.amu.Lock()
		if of.dirtyHint {
			p[uint64(ino)] = true
		}
		of.amu.Unlock()
	}
	return p
}

// mergeNewer merges root latest (which chains to the anchor) into the working copy and
// moves the anchor to it. It reports whether the working copy changed.
func (f *FS) mergeNewer(ctx context.Context, latest uint64) (bool, error) {
	var anchor uint64
	f.db.View(func(tx *bolt.Tx) error {
		anchor = getU64(tx, mAnchorSeq)
		return nil
	})
	base, err := f.loadSide(ctx, anchor)
	if errors.Is(err, backend.ErrNotExist) && f.localWork() == "" {
		// gc collected the anchor's objects (a read-only cache has no presence record to
		// keep them): with no work of its own, the working copy is the base.
		base, err = nil, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading this cache's last root %d (the merge base): %w", anchor, err)
	}
	theirs, err := f.loadSide(ctx, latest)
	if err != nil {
		return false, err
	}
	theirDev := deviceOfRoot(theirs.root)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.commitLocked(); err != nil {
		return false, err
	}
	var conflicts []string
	changed := false
	var chs Changes
	var arrived []Ino
	err = f.db.Update(func(tx *bolt.Tx) error {
		if getU64(tx, mAnchorSeq) != anchor {
			return errors.New("core: the anchor moved during a merge")
		}
		ours, err := f.oursSide(tx)
		if err != nil {
			return err
		}
		if base == nil {
			base = ours
		}
		var allocErr error
		res := rootsync.Merge(rootsync.Input{
			Base: base.syncTree(), Ours: ours.syncTree(), Theirs: theirs.syncTree(),
			Pinned: f.pinnedLocked(),
			Alloc: func() uint64 {
				ino, err := f.allocIno(tx)
				if err != nil && allocErr == nil {
					allocErr = err
				}
				return uint64(ino)
			},
			OurDevice: f.device(), TheirDevice: theirDev,
		})
		if allocErr != nil {
			return allocErr
		}
		conflicts = res.Conflicts
		chs = mergeChanges(res, ours, theirs, base)
		arrived = arrivedContent(res, ours, theirs, base)
		changed, err = f.applyMerge(tx, res, base, ours, theirs)
		return err
	})
	if err != nil {
		return false, asErrno(err)
	}
	for _, c := range conflicts {
		f.log.Warn("core: merge with another device's root", "root", latest, "what", c)
	}
	f.log.Info("core: merged another device's root into the working copy", "root", latest, "changed", changed)
	f.kickCommit()
	if fn := f.onMerge.Load(); fn != nil && (len(chs.Inodes) > 0 || len(chs.Entries) > 0) {
		(*fn)(chs)
	}
	if cb := f.opts.OnSealed; cb != nil && len(arrived) > 0 {
		// Content that arrived from other devices is sealed and stored: the near-duplicate
		// indexer queues it like this device's own (off f.mu, which its queue write takes).
		go func() {
			for _, ino := range arrived {
				cb(ino)
			}
		}()
	}
	return changed, nil
}

// arrivedContent lists the regular files whose sealed content the merge result takes from
// another side than ours (new files, new versions, conflict copies of theirs), and ours'
// files that the merge removed, for OnSealed.
func arrivedContent(res *rootsync.Result, ours, theirs, base *side) []Ino {
	var out []Ino
	for ino, p := range res.Picks {
		if p.Side == rootsync.Ours {
			continue
		}
		var ti *treeInode
		if p.Side == rootsync.Theirs {
			ti = theirs.nodes[Ino(p.From)]
		} else {
			ti = base.nodes[Ino(p.From)]
		}
		if ti == nil || !ti.Node.isReg() || !ti.Node.HasRef {
			continue
		}
		if o := ours.nodes[Ino(ino)]; o == nil || contentID(&o.Node) != contentID(&ti.Node) {
			out = append(out, Ino(ino))
		}
	}
	for ino, o := range ours.nodes {
		if res.Picks[uint64(ino)] == nil && o.Node.isReg() {
			out = append(out, ino)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// mergeChanges lists what the merge result changes against the working copy (ours).
func mergeChanges(res *rootsync.Result, ours, theirs, base *side) Changes {
	var ch Changes
	enc := func(n inode) string {
		n.Spool = 0
		var e encoder
		n.encode(&e, false)
		return string(e.b)
	}
	oldLinks := map[Ino][]rootsync.Link{}
	for _, d := range ours.t.Dirents {
		oldLinks[d.Ino] = append(oldLinks[d.Ino], rootsync.Link{Parent: uint64(d.Parent), Name: d.Name})
	}
	for ino, o := range ours.nodes {
		p := res.Picks[uint64(ino)]
		switch {
		case p == nil:
			ch.Inodes = append(ch.Inodes, ino)
		case p.Side == rootsync.Ours && p.From == uint64(ino):
		default:
			var n inode
			switch p.Side {
			case rootsync.Theirs:
				n = theirs.nodes[Ino(p.From)].Node
			case rootsync.Base:
				n = base.nodes[Ino(p.From)].Node
			}
			if enc(n) != enc(o.Node) {
				ch.Inodes = append(ch.Inodes, ino)
			}
		}
	}
	seen := map[rootsync.Link]bool{}
	for ino, p := range res.Picks {
		old := oldLinks[Ino(ino)]
		for _, l := range p.Links {
			if !slicesContains(old, l) && !seen[l] {
				seen[l] = true
				ch.Entries = append(ch.Entries, Entry{Parent: Ino(l.Parent), Name: l.Name})
			}
		}
		for _, l := range old {
			if !slicesContains(p.Links, l) && !seen[l] {
				seen[l] = true
				ch.Entries = append(ch.Entries, Entry{Parent: Ino(l.Parent), Name: l.Name})
			}
		}
	}
	for ino, old := range oldLinks {
		if res.Picks[uint64(ino)] == nil {
			for _, l := range old {
				if !seen[l] {
					seen[l] = true
					ch.Entries = append(ch.Entries, Entry{Parent: Ino(l.Parent), Name: l.Name})
				}
			}
		}
	}
	return ch
}

func slicesContains(ls []rootsync.Link, l rootsync.Link) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}

// SetOnMerge sets fn to be called after roots of other devices were merged into the
// working copy, with what changed (fs/ invalidates the kernel's caches). fn runs on the
// merging goroutine, possibly inside a FUSE request (Fsync): it must hand work to a goroutine.
func (f *FS) SetOnMerge(fn func(Changes)) { f.onMerge.Store(&fn) }

// refresher polls for roots of other devices and merges them (live refresh; the poll is
// rootsync.Syncer.Poll). A read-only mount also checks its own anchor every 12th poll: it
// has no presence record, so gc may collect its last root (docs/cli.md, gc).
func (f *FS) refresher() {
	defer f.wg.Done()
	every := f.opts.RefreshInterval
	if every == 0 {
		every = 5 * time.Second
	}
	if f.frozen {
		return
	}
	checkEvery := 0
	if f.ro {
		checkEvery = 12
	}
	f.sync.Poll(f.ctx, f.wc(), every, checkEvery)
}

// Refresh merges roots that other devices wrote after this cache's anchor, if any: one
// HEAD of the next root name when there are none. An unreachable store is not an error
// (the device works offline and merges when the store returns).
func (f *FS) Refresh(ctx context.Context) error {
	if f.frozen {
		return nil
	}
	return syncErr("merging other devices' roots", f.sync.Refresh(ctx, f.wc(), f.ro))
}

// applyMerge writes the merge result as the working copy (inside tx) and moves the anchor.
func (f *FS) applyMerge(tx *bolt.Tx, res *rootsync.Result, base, ours, theirs *side) (bool, error) {
	m := tx.Bucket(bMeta)
	chg := getU64(tx, mChg) + 1
	// Open files whose inode the merge drops stay as orphans (their handles keep working).
	for ino := range f.open {
		if _, ok := res.Picks[uint64(ino)]; !ok && ours.nodes[ino] != nil {
			res.Picks[uint64(ino)] = &rootsync.Pick{Side: rootsync.Ours, From: uint64(ino)}
		}
	}
	record := func(p *rootsync.Pick) *treeInode {
		switch p.Side {
		case rootsync.Ours:
			return ours.nodes[Ino(p.From)]
		case rootsync.Theirs:
			return theirs.nodes[Ino(p.From)]
		}
		return base.nodes[Ino(p.From)]
	}
	subdirs := map[uint64]uint32{}
	for _, p := range res.Picks {
		if record(p).Node.isDir() {
			for _, l := range p.Links {
				subdirs[l.Parent]++
			}
		}
	}
	for _, b := range [][]byte{bInodes, bDirents, bXattrs, bOrphans} {
		if err := tx.DeleteBucket(b); err != nil {
			return false, err
		}
		if _, err := tx.CreateBucket(b); err != nil {
			return false, err
		}
	}
	dirty := map[uint64]bool{} // shards that differ from theirs'
	inos := make([]Ino, 0, len(res.Picks))
	for ino, p := range res.Picks {
		inos = append(inos, Ino(ino))
		ti := record(p)
		n := ti.Node
		if p.Side != rootsync.Ours {
			n.Spool = 0
		}
		if n.isDir() {
			n.Nlink = 2 + subdirs[ino]
		} else {
			n.Nlink = uint32(len(p.Links))
		}
		keepHint := false
		for _, l := range p.Links {
			keepHint = keepHint || l.Parent == uint64(n.Parent) && l.Name == n.Name
		}
		if !keepHint && len(p.Links) > 0 {
			n.Parent, n.Name = Ino(p.Links[0].Parent), p.Links[0].Name
		}
		if err := f.putInode(tx, Ino(ino), &n); err != nil {
			return false, err
		}
		for _, x := range ti.Xattrs {
			if err := f.putXattr(tx, Ino(ino), x.Name, x.Value); err != nil {
				return false, err
			}
		}
		for _, l := range p.Links {
			if err := f.putDirent(tx, Ino(l.Parent), dirent{Name: l.Name, Ino: Ino(ino), Mode: n.Mode.Type()}); err != nil {
				return false, err
			}
		}
		if len(p.Links) == 0 && ino != uint64(RootIno) {
			// Kept only because it is open here (pinned): the last close deletes it, as
			// after a local unlink, unless a version is recorded first (relinkLocked).
			if err := tx.Bucket(bOrphans).Put(be64(ino), nil); err != nil {
				return false, err
			}
			if of := f.open[Ino(ino)]; of != nil {
				of.setMergeUnlinked()
			}
		}
		// Unchanged from theirs: the same record and the same names.
		t := theirs.nodes[Ino(ino)]
		same := p.Side == rootsync.Theirs && p.From == ino && t != nil && t.Node.Nlink == n.Nlink &&
			t.Node.Parent == n.Parent && t.Node.Name == n.Name
		if same {
			var tl []rootsync.Link
			for _, d := range theirs.t.Dirents {
				if d.Ino == Ino(ino) {
					tl = append(tl, rootsync.Link{Parent: uint64(d.Parent), Name: d.Name})
				}
			}
			same = sameLinks(tl, p.Links)
		}
		if !same {
			dirty[ino/shardSize] = true
		}
	}
	for ino := range theirs.nodes {
		if _, ok := res.Picks[uint64(ino)]; !ok {
			dirty[uint64(ino)/shardSize] = true
		}
	}
	// The journal: records whose inode no longer points at their spool go (with the spool).
	var drop []uint64
	tx.Bucket(bPending).ForEach(func(k, v []byte) error {
		id := be64u(k)
		rec, err := decodePending(v)
		p := res.Picks[uint64(rec.Ino)]
		if err != nil || p == nil || p.Side != rootsync.Ours || ours.nodes[rec.Ino] == nil || ours.nodes[rec.Ino].Node.Spool != id {
			drop = append(drop, id)
		}
		return nil
	})
	for _, id := range drop {
		tx.Bucket(bPending).Delete(be64(id))
		f.dropSpoolAfter(tx, id)
	}
	// Aux tables: a 3-way merge per key (a key changed on ours wins).
	dirtyUnits := map[string]bool{}
	tables := map[string]bool{}
	for _, s := range []*side{ours, theirs} {
		for t := range s.aux {
			tables[t] = true
		}
	}
	for table := range tables {
		if err := tx.Bucket(bAux).DeleteBucket([]byte(table)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return false, err
		}
		b, o, t := base.aux[table], ours.aux[table], theirs.aux[table]
		keys := map[string]bool{}
		for k := range o {
			keys[k] = true
		}
		for k := range t {
			keys[k] = true
		}
		for k := range b {
			keys[k] = true
		}
		for k := range keys {
			bv, inB := b[k]
			ov, inO := o[k]
			tv, inT := t[k]
			oCh := inO != inB || inO && !bytes.Equal(ov, bv)
			v, in := tv, inT
			if oCh {
				v, in = ov, inO
			}
			if in != inT || in && !bytes.Equal(v, tv) {
				dirtyUnits[auxUnit(table, f.lc.auxKey(table, []byte(k)))] = true
			}
			if in {
				if err := f.putAux(tx, table, []byte(k), v); err != nil {
					return false, err
				}
			}
		}
	}
	// Meta: theirs' objects for what is unchanged, dirty marks for the rest.
	var del [][]byte
	m.ForEach(func(k, _ []byte) error {
		for _, p := range []string{mAuxLoc, mAuxDirty, mShLoc, mShDirty} {
			if bytes.HasPrefix(k, []byte(p)) {
				del = append(del, append([]byte(nil), k...))
			}
		}
		return nil
	})
	for _, k := range del {
		m.Delete(k)
	}
	if theirs.root != nil {
		for _, s := range theirs.root.Shards {
			if err := m.Put(shardKey(mShLoc, s.Shard), s.Loc[:]); err != nil {
				return false, err
			}
		}
		for _, a := range theirs.root.Aux {
			if err := m.Put([]byte(mAuxLoc+a.Table), a.Loc[:]); err != nil {
				return false, err
			}
		}
	}
	for sh := range dirty {
		if err := m.Put(shardKey(mShDirty, sh), be64(chg)); err != nil {
			return false, err
		}
	}
	for u := range dirtyUnits {
		if err := putU64(tx, mAuxDirty+u, chg); err != nil {
			return false, err
		}
	}
	if err := ownCounter(tx, inos); err != nil {
		return false, err
	}
	if err := putU64(tx, mAnchorSeq, theirs.seq); err != nil {
		return false, err
	}
	if err := m.Put([]byte(mAnchorHash), theirs.hash[:]); err != nil {
		return false, err
	}
	if len(dirty) == 0 && len(dirtyUnits) == 0 {
		// The working copy is theirs' root exactly: nothing of ours to commit.
		if err := putU64(tx, mChg, chg); err != nil {
			return false, err
		}
		return true, putU64(tx, mCommitted, chg)
	}
	return true, putU64(tx, mChg, chg)
}

func sameLinks(a, b []rootsync.Link) bool {
	if len(a) != len(b) {
		return false
	}
	set := map[rootsync.Link]bool{}
	for _, l := range a {
		set[l] = true
	}
	for _, l := range b {
		if !set[l] {
			return false
		}
	}
	return true
}

// relinkLocked gives back a name to ino, which a merge unlinked while it was open here
// (another device deleted it) and which was written since: delete against modify keeps the
// modified file (docs/core.md, "Several devices"). The name is its old one, a conflict copy
// name when that is taken, in its old directory, or in the root when that is gone. n is
// updated; the caller puts it (f.mu held, inside the batch).
func (f *FS) relinkLocked(tx *bolt.Tx, ino Ino, n *inode) (Entry, error) {
	parent, name := n.Parent, n.Name
	if name == "" {
		name = fmt.Sprintf("inode %d", ino)
	}
	p, err := f.dirInode(tx, parent)
	if err != nil {
		parent = RootIno
		if p, err = f.dirInode(tx, parent); err != nil {
			return Entry{}, err
		}
	}
	for k := 0; ; k++ {
		nm := name
		if k > 0 {
			nm = rootsync.ConflictName(name, f.device(), n.Mtime, k)
		}
		_, taken, err := f.getDirent(tx, parent, nm)
		if err != nil {
			return Entry{}, err
		}
		if !taken {
			name = nm
			break
		}
	}
	now := nowNs()
	n.Nlink, n.Parent, n.Name, n.Ctime = 1, parent, name, max(n.Ctime, now)
	p.Mtime, p.Ctime = now, now
	if err := f.putInode(tx, parent, &p); err != nil {
		return Entry{}, err
	}
	if err := f.putDirent(tx, parent, dirent{Name: name, Ino: ino, Mode: n.Mode.Type()}); err != nil {
		return Entry{}, err
	}
	if err := bdel(tx, bOrphans, be64(uint64(ino))); err != nil {
		return Entry{}, err
	}
	return Entry{Parent: parent, Name: name}, change(tx)
}

// relinked: of has a name again (relinkLocked); fs/ learns the new entry as after a merge.
func (f *FS) relinked(of *openFile, e Entry) {
	f.log.Warn("core: a file another device deleted was written here: kept", "ino", uint64(of.ino), "dir", uint64(e.Parent))
	f.kickCommit()
	if fn := f.onMerge.Load(); fn != nil {
		(*fn)(Changes{Inodes: []Ino{of.ino}, Entries: []Entry{e}})
	}
}

// device is this device's name in conflict copies and presence records.
func (f *FS) device() string {
	if f.opts.Device != "" {
		return f.opts.Device
	}
	h, _ := os.Hostname()
	return h
}

// deviceOfRoot is the device that wrote r ("" for roots older than the device field).
func deviceOfRoot(r *rootRec) string {
	if r == nil {
		return ""
	}
	return r.Device
}
