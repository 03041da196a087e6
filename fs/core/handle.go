package core

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/imgfs/imgfs/dedup"
)

// openFile is the in-memory state of a regular file with at least one handle (or an
// internal user such as SetAttr's truncate). All handles of one inode share it, so they see
// each other's writes. Writes go to a spool file private to this open state; a spool that
// a flush recorded in the journal is frozen and the next write copies it first
// (copy-on-write), so a recorded version is never modified in place.
type openFile struct {
	f    *FS
	ino  Ino
	refs int // under f.mu

	mu     sync.Mutex // data state below; lock order: mu, then f.mu
	sp     *spoolFile // nil: content is the inode's recorded content (src)
	spID   uint64
	spDisk int64 // bytes of sp accounted in f.spoolUsed
	frozen bool  // sp is recorded in the journal
	dirty  bool  // sp has writes not yet flushed
	src    io.ReaderAt
	srcSz  int64
	srcCl  io.Closer

	amu       sync.Mutex // leaf lock for the attribute overlay
	overlay_  bool
	dirtyHint bool // writes since the last flush (for ContentID without of.mu)
	size      int64
	mtime     int64
	unlinked  bool
	byMerge   bool // unlinked by a merge (another device deleted it), not by this device
}

func (of *openFile) overlay(a *Attr) {
	of.amu.Lock()
	defer of.amu.Unlock()
	if of.overlay_ {
		a.Size = of.size
		a.Mtime = timeNs(of.mtime)
		a.Ctime = timeNs(max(a.Ctime.UnixNano(), of.mtime))
	}
}

func (of *openFile) setMtime(ns int64) {
	of.amu.Lock()
	of.mtime = ns
	of.amu.Unlock()
}

func (of *openFile) setUnlinked() {
	of.amu.Lock()
	of.unlinked, of.byMerge = true, false
	of.amu.Unlock()
}

// setMergeUnlinked: a merge dropped the inode (another device deleted it). A version
// recorded after it is a modification, and the merge rule keeps it (relinkLocked).
func (of *openFile) setMergeUnlinked() {
	of.amu.Lock()
	of.unlinked, of.byMerge = true, true
	of.amu.Unlock()
}

// unlinkedByMerge reports whether the inode was unlinked by a merge (and not relinked).
func (of *openFile) unlinkedByMerge() bool {
	of.amu.Lock()
	defer of.amu.Unlock()
	return of.unlinked && of.byMerge
}

func (of *openFile) isUnlinked() bool {
	of.amu.Lock()
	defer of.amu.Unlock()
	return of.unlinked
}

func (of *openFile) setSize(size int64, touch bool) {
	of.amu.Lock()
	of.overlay_ = true
	of.size = size
	if touch {
		of.mtime = nowNs()
		of.dirtyHint = true
	}
	of.amu.Unlock()
}

func (of *openFile) curSize() int64 {
	of.amu.Lock()
	defer of.amu.Unlock()
	return of.size
}

func (of *openFile) closeFiles() {
	if of.sp != nil {
		of.sp.Close()
	}
	if of.srcCl != nil {
		of.srcCl.Close()
		of.srcCl = nil
	}
}

// Handle is an open file. Writes go to an encrypted spool file (copy-on-write), so a crash
// never mixes an old and a new version. All handles of one inode share one spool.
type Handle struct {
	f      *FS
	of     *openFile
	write  bool
	append bool
	mu     sync.Mutex
	done   bool
	wrote  atomic.Bool // this handle wrote or truncated: its close records the spool
	// created: the handle made the file; its close is the barrier that makes the create
	// durable even without writes (cp of an empty file).
	created bool
}

// Ino is the inode the handle refers to.
func (h *Handle) Ino() Ino { return h.of.ino }

// acquire returns the open state of ino with one more reference. Caller holds f.mu.
func (f *FS) acquire(ino Ino) *openFile {
	of := f.open[ino]
	if of == nil {
		of = &openFile{f: f, ino: ino}
		f.open[ino] = of
	}
	of.refs++
	return of
}

// refOpen takes a reference on ino's open state, if it has one (nil: not open); the caller
// drops it with releaseOpen.
func (f *FS) refOpen(ino Ino) *openFile {
	f.mu.Lock()
	defer f.mu.Unlock()
	of := f.open[ino]
	if of != nil {
		of.refs++
	}
	return of
}

// releaseOpen drops one reference; the last one closes files, drops an unflushed spool and
// deletes an unlinked inode.
func (f *FS) releaseOpen(of *openFile) error {
	of.mu.Lock()
	defer of.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	of.refs--
	if of.refs > 0 {
		return nil
	}
	delete(f.open, of.ino)
	of.closeFiles()
	if of.sp != nil && !of.frozen {
		f.removeSpool(of.spID)
	}
	of.sp = nil
	if !of.isUnlinked() {
		return f.ackHoldLocked(of.ino) // the last release acknowledges what is recorded
	}
	defer f.ackHoldLocked(of.ino)
	return f.writeLocked(func(tx *bolt.Tx) error {
		n, err := f.getInode(tx, of.ino)
		if err != nil {
			return nil // already gone
		}
		if n.Nlink > 0 {
			return nil // relinked? (not possible today, but harmless)
		}
		return f.deleteInode(tx, of.ino, &n)
	})
}

func (f *FS) newHandle(of *openFile, flags int) *Handle {
	acc := flags & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	return &Handle{f: f, of: of, write: acc == os.O_WRONLY || acc == os.O_RDWR, append: flags&os.O_APPEND != 0}
}

// Create makes a regular file: EEXIST if excl and it exists; otherwise an existing regular
// file is opened as it is (never truncated: use CreateFlags with os.O_TRUNC for that).
func (f *FS) Create(parent Ino, name string, mode os.FileMode, excl bool) (Attr, *Handle, error) {
	flags := os.O_RDWR | os.O_CREATE
	if excl {
		flags |= os.O_EXCL
	}
	return f.CreateFlags(parent, name, mode, flags)
}

// CreateFlags is Create with open(2) flags: O_EXCL, O_TRUNC, O_APPEND and the access mode
// are honoured.
func (f *FS) CreateFlags(parent Ino, name string, mode os.FileMode, flags int) (Attr, *Handle, error) {
	if f.ro {
		return Attr{}, nil, f.rofs()
	}
	if err := checkName(name); err != nil {
		return Attr{}, nil, err
	}
	f.mu.Lock()
	var existing Ino
	var a Attr
	err := f.update(func(tx *bolt.Tx) error {
		de, ok, err := f.getDirent(tx, parent, name)
		if err != nil {
			return err
		}
		if ok {
			if flags&os.O_EXCL != 0 {
				return errnoErr(syscall.EEXIST, "%q exists", name)
			}
			existing = de.Ino
			return nil
		}
		n := inode{Mode: mode.Perm() | (mode & (os.ModeSetuid | os.ModeSetgid | os.ModeSticky)), Nlink: 1}
		ino, err := f.newChild(tx, parent, name, &n)
		if err != nil {
			return err
		}
		a = n.attr(ino)
		return nil
	})
	if err != nil {
		f.mu.Unlock()
		return Attr{}, nil, err
	}
	if existing != 0 {
		f.mu.Unlock()
		h, err := f.OpenFile(existing, flags)
		if err != nil {
			return Attr{}, nil, err
		}
		a, err = f.GetAttr(existing)
		if err != nil {
			h.Release()
			return Attr{}, nil, err
		}
		return a, h, nil
	}
	of := f.acquire(a.Ino)
	f.armHoldLocked(a.Ino) // empty until a close acknowledges its content (unacked.go)
	f.mu.Unlock()
	h := f.newHandle(of, flags)
	h.created = true
	return a, h, nil
}

// OpenFile opens an existing regular file; flags are os.O_* (O_TRUNC truncates, O_APPEND
// makes every WriteAt append).
func (f *FS) OpenFile(ino Ino, flags int) (*Handle, error) {
	acc := flags & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	writable := acc == os.O_WRONLY || acc == os.O_RDWR
	if f.ro && (writable || flags&os.O_TRUNC != 0) {
		return nil, f.rofs()
	}
	f.mu.Lock()
	var n inode
	err := f.viewLocked(func(tx *bolt.Tx) error {
		var err error
		n, err = f.getInode(tx, ino)
		return err
	})
	if err != nil {
		f.mu.Unlock()
		return nil, err
	}
	switch {
	case n.isDir():
		f.mu.Unlock()
		return nil, errnoErr(syscall.EISDIR, "inode %d is a directory", ino)
	case !n.isReg():
		f.mu.Unlock()
		return nil, errnoErr(syscall.EINVAL, "inode %d is not a regular file", ino)
	}
	of := f.acquire(ino)
	f.mu.Unlock()
	h := f.newHandle(of, flags)
	if flags&os.O_TRUNC != 0 && writable {
		of.mu.Lock()
		err := of.truncateLocked(0)
		of.mu.Unlock()
		if err != nil {
			h.Release()
			return nil, err
		}
		h.wrote.Store(true)
	}
	return h, nil
}

// ReadAt reads like io.ReaderAt: n < len(p) only at the end of the file, with io.EOF.
// Other errors match syscall.EIO (failed verification, store failure).
func (h *Handle) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errnoErr(syscall.EINVAL, "negative offset")
	}
	of := h.of
	of.mu.Lock()
	defer of.mu.Unlock()
	if of.sp != nil {
		n, err := of.sp.readAt(p, off, of.curSize())
		if err != nil && err != io.EOF {
			return n, eio("reading spool", err)
		}
		return n, err
	}
	if err := of.openSrc(); err != nil {
		return 0, err
	}
	if off >= of.srcSz {
		return 0, io.EOF
	}
	want := p
	if rest := of.srcSz - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	n, err := of.src.ReadAt(want, off)
	if err != nil && !(err == io.EOF && n == len(want)) {
		return n, eio("reading content", err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// openSrc opens the recorded content of the inode for reading (of.mu held).
func (of *openFile) openSrc() error {
	if of.src != nil {
		return nil
	}
	f := of.f
	for try := 0; ; try++ {
		f.mu.Lock()
		var n inode
		err := f.viewLocked(func(tx *bolt.Tx) error {
			var err error
			n, err = f.getInode(tx, of.ino)
			return err
		})
		f.mu.Unlock()
		if err != nil {
			return err
		}
		switch {
		case n.Spool != 0:
			sp, _, err := f.openRecorded(n.Spool)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) && try < 3 {
					continue // sealed meanwhile: read the inode again
				}
				return eio("opening spool", err)
			}
			of.src, of.srcSz, of.srcCl = &lockedSpoolReader{s: sp, size: n.Size}, n.Size, sp
		case n.HasRef:
			r := f.openContent(n.Ref)
			of.src, of.srcSz, of.srcCl = r, n.Ref.Size(), r
		default:
			of.src, of.srcSz = emptyReader{}, 0
		}
		return nil
	}
}

type emptyReader struct{}

func (emptyReader) ReadAt(p []byte, off int64) (int, error) { return 0, io.EOF }

type lockedSpoolReader struct {
	mu   sync.Mutex
	s    *spoolFile
	size int64
}

func (r *lockedSpoolReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.s.readAt(p, off, r.size)
}

// ensureSpool makes of.sp a private, unfrozen spool holding the current content
// (copy-on-write). The new spool is an overlay: over sealed content it starts empty; over a
// recorded spool not yet sealed it copies only the blocks that spool holds. of.mu held.
func (of *openFile) ensureSpool(emptyOK bool) error {
	if of.sp != nil && !of.frozen {
		return nil
	}
	f := of.f
	var id uint64
	var sp *spoolFile
	var size int64
	var err error
	if emptyOK {
		id, sp, err = f.newSpool()
		if err != nil {
			return localErr("creating spool", err)
		}
	} else {
		for try := 0; ; try++ {
			id, sp, size, err = of.cowSpool()
			if errors.Is(err, os.ErrNotExist) && try < 3 {
				continue // the recorded spool was sealed meanwhile
			}
			if err != nil {
				return err
			}
			break
		}
	}
	if of.sp != nil {
		of.sp.Close()
	}
	of.sp, of.spID, of.frozen, of.spDisk = sp, id, false, 0
	of.account()
	of.setSize(size, false)
	return nil
}

// cowSpool makes a new spool with the current content of the file (of.mu held).
func (of *openFile) cowSpool() (id uint64, sp *spoolFile, size int64, err error) {
	f := of.f
	var n inode
	if err := f.view(func(tx *bolt.Tx) error {
		var err error
		n, err = f.getInode(tx, of.ino)
		return err
	}); err != nil {
		return 0, nil, 0, err
	}
	var from *spoolFile // a spool to copy held blocks from
	var base dedup.Content
	var baseLen int64
	switch {
	case of.sp != nil && n.Spool == of.spID:
		// Our last flush, not sealed yet.
		from, base, baseLen, size = of.sp, of.sp.baseC, of.sp.baseLen, of.curSize()
	case of.sp != nil && n.Spool == 0 && n.HasRef:
		// Our last flush, sealed since (every write of the inode goes through this open
		// state, so the inode's content is what our frozen spool held).
		base, baseLen, size = n.Ref, n.Ref.Size(), n.Ref.Size()
	case of.sp == nil && n.Spool != 0:
		rsp, rec, err := f.openRecorded(n.Spool)
		if err != nil {
			return 0, nil, 0, err
		}
		defer rsp.Close()
		from, base, baseLen, size = rsp, rec.Base, rec.BaseLen, n.Size
	case of.sp == nil && n.HasRef:
		base, baseLen, size = n.Ref, n.Ref.Size(), n.Ref.Size()
	case of.sp == nil:
	default:
		return 0, nil, 0, eio("copy-on-write", errors.New("open file and inode disagree"))
	}
	if from != nil {
		var held [][2]int64
		if held, err = from.heldBlocks(); err != nil {
			return 0, nil, 0, localErr("reading spool", err)
		}
		var bytes int64
		for _, h := range held {
			bytes += (h[1] - h[0]) * spoolSlot
		}
		if err := f.reserveSpool(bytes); err != nil {
			return 0, nil, 0, err
		}
		id = f.spoolSeq.Add(1)
		sp, err = copySpool(from, f.spoolPath(id), f.lc.spool)
	} else {
		id, sp, err = f.newSpool()
	}
	if err != nil {
		return 0, nil, 0, localErr("creating spool", err)
	}
	if base.Len() > 0 {
		r := f.openContent(base)
		sp.setBase(base, r, r, baseLen)
	}
	return id, sp, size, nil
}

// openRecorded opens the spool of journal record id over its base, for reading.
func (f *FS) openRecorded(id uint64) (*spoolFile, pendingRec, error) {
	var rec pendingRec
	found := false
	err := f.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bPending).Get(be64(id))
		if v == nil {
			return nil
		}
		var err error
		rec, err = decodePending(v)
		found = err == nil
		return err
	})
	if err != nil {
		return nil, rec, err
	}
	if !found {
		return nil, rec, os.ErrNotExist
	}
	sp, err := openSpool(f.spoolPath(id), f.lc.spool, false)
	if err != nil {
		return nil, rec, err
	}
	if rec.Base.Len() > 0 {
		r := f.openContent(rec.Base)
		sp.setBase(rec.Base, r, r, rec.BaseLen)
	}
	return sp, rec, nil
}

// account brings f.spoolUsed up to date with the disk space of of.sp (allocated blocks:
// spools are sparse).
func (of *openFile) account() {
	if st, err := of.sp.f.Stat(); err == nil {
		of.f.spoolUsed.Add(diskUsage(st) - of.spDisk)
		of.spDisk = diskUsage(st)
	}
}

// diskUsage is the space a file takes on disk.
func diskUsage(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}

// reserveSpool fails with ENOSPC when growing the spool by n bytes would pass SpoolLimit.
func (f *FS) reserveSpool(n int64) error {
	if f.opts.SpoolLimit > 0 && n > 0 && f.spoolUsed.Load()+n > f.opts.SpoolLimit {
		return errnoErr(syscall.ENOSPC, "spool limit of %d bytes reached", f.opts.SpoolLimit)
	}
	return nil
}

// spoolHeadroom is the space spool writes leave free on the cache's file system, so that
// the state database and the journal do not hit ENOSPC once the spool has filled it: a
// failed group commit drops its batch, with the removals that would free the space
// (docs/core.md, "Errors").
const spoolHeadroom = 8 << 20

// reserveDisk fails with ENOSPC when writing n more spool bytes would leave less than
// spoolHeadroom free on the cache's file system.
func (f *FS) reserveDisk(n int64) error {
	var st unix.Statfs_t
	if n > 0 && unix.Statfs(f.dir, &st) == nil && int64(st.Bavail)*int64(st.Bsize) < n+spoolHeadroom {
		return errnoErr(syscall.ENOSPC, "cache file system full (spool writes leave %d bytes free)", spoolHeadroom)
	}
	return nil
}

// WriteAt writes p at off (at the end of the file for an O_APPEND handle). It never
// returns a short count without an error; ENOSPC when the spool is full.
func (h *Handle) WriteAt(p []byte, off int64) (int, error) {
	if !h.write {
		return 0, errnoErr(syscall.EBADF, "handle not open for writing")
	}
	if off < 0 {
		return 0, errnoErr(syscall.EINVAL, "negative offset")
	}
	of := h.of
	of.mu.Lock()
	defer of.mu.Unlock()
	if err := of.ensureSpool(false); err != nil {
		return 0, err
	}
	size := of.curSize()
	if h.append {
		off = size
	}
	end := off + int64(len(p))
	if len(p) > 0 {
		// The spool is sparse: a write may allocate every block it touches (counted even
		// if the spool holds some of them already: the check is conservative).
		touched := ((end-1)/spoolBlock - off/spoolBlock + 1) * spoolSlot
		grow := max(spoolDiskSize(end)-spoolDiskSize(size), touched)
		if err := of.f.reserveSpool(grow); err != nil {
			return 0, err
		}
		if err := of.f.reserveDisk(grow); err != nil {
			return 0, err
		}
	}
	err := of.sp.writeAt(p, off)
	of.account()
	if err != nil {
		return 0, localErr("writing spool", err)
	}
	of.dirty = true
	h.wrote.Store(true)
	of.setSize(max(size, end), true)
	return len(p), nil
}

// truncateLocked sets the size (of.mu held).
func (of *openFile) truncateLocked(size int64) error {
	if size == 0 {
		// Nothing to copy: start a fresh spool.
		if of.sp != nil && !of.frozen {
			of.sp.Close()
			of.f.removeSpool(of.spID)
			of.sp = nil
			of.spDisk = 0
		}
		if err := of.ensureSpool(true); err != nil {
			return err
		}
	} else {
		if err := of.ensureSpool(false); err != nil {
			return err
		}
		old := of.curSize()
		if size > old {
			if err := of.f.reserveSpool(spoolDiskSize(size) - spoolDiskSize(old)); err != nil {
				return err
			}
		}
		err := of.sp.truncate(size, old)
		of.account()
		if err != nil {
			return localErr("truncating spool", err)
		}
	}
	of.dirty = true
	of.setSize(size, true)
	return nil
}

// truncateIno is SetAttr's size change: through the open state, then flushed.
func (f *FS) truncateIno(ino Ino, size int64) error {
	f.mu.Lock()
	var n inode
	err := f.viewLocked(func(tx *bolt.Tx) error {
		var err error
		n, err = f.getInode(tx, ino)
		return err
	})
	if err != nil {
		f.mu.Unlock()
		return err
	}
	if n.isDir() {
		f.mu.Unlock()
		return errnoErr(syscall.EISDIR, "truncate of a directory")
	}
	if !n.isReg() {
		f.mu.Unlock()
		return errnoErr(syscall.EINVAL, "truncate of a non-regular file")
	}
	of := f.acquire(ino)
	if size == 0 && of.refs > 1 {
		// open(O_TRUNC) reaches us as OPEN, then this: the writes that follow make the
		// version (unacked.go).
		f.armHoldLocked(ino)
	}
	f.mu.Unlock()
	of.mu.Lock()
	err = of.truncateLocked(size)
	of.mu.Unlock()
	if err == nil {
		err = f.flushOpen(of)
	}
	return errors.Join(err, f.releaseOpen(of))
}

// Flush is close(2): returns once the spool's data and a journal record are in the kernel
// (write(2), no fsync: survives kill -9 at once, power loss after the next group commit,
// docs/core.md). Only a handle that wrote flushes: closing a reader must not record another
// handle's half-done writes as a version.
func (h *Handle) Flush() error {
	err := h.flush()
	if err == nil && (h.write || h.created) {
		err = h.f.ackHold(h.of.ino) // a close acknowledges the recorded version (unacked.go)
	}
	if err != nil {
		h.f.log.Error("core: close failed", "ino", uint64(h.of.ino), "err", err)
	}
	return err
}

func (h *Handle) flush() error {
	if !h.wrote.Load() {
		return nil // a create was journaled when it happened
	}
	return h.f.flushOpen(h.of)
}

// flushOpen records unflushed writes of of: one batch operation points the inode at the
// spool and adds the pending record; its journal record carries the spool's slot digest
// (journal.go). No fsync: the group commit makes the spool and the record durable. After
// it the spool is frozen and queued for sealing.
func (f *FS) flushOpen(of *openFile) error { return f.recordOpen(of) }

// recordOpen is flushOpen (Fsync uses it too: the root commit that follows commits the
// batch, spools first).
func (f *FS) recordOpen(of *openFile) error {
	of.mu.Lock()
	defer of.mu.Unlock()
	if !of.dirty || of.sp == nil {
		return nil // nothing new (another handle's close recorded it, or nothing written)
	}
	if of.isUnlinked() && !of.unlinkedByMerge() {
		return nil // nothing can name it any more; the data lives until the last Release
	}
	digest := slotDigest(of.sp.nonces)
	size := of.curSize()
	of.amu.Lock()
	mtime := of.mtime
	of.amu.Unlock()
	relink, added := false, Entry{} // a relink and the name it gave the file
	f.mu.Lock()
	err := f.writeLocked(func(tx *bolt.Tx) error {
		n, err := f.getInode(tx, of.ino)
		if err != nil {
			return err
		}
		if old := n.Spool; old != 0 && old != of.spID {
			if err := bdel(tx, bPending, be64(old)); err != nil {
				return err
			}
			f.dropSpoolAfter(tx, old)
		}
		n.Spool, n.Size, n.Mtime, n.Ctime = of.spID, size, mtime, max(n.Ctime, mtime)
		if relink = of.unlinkedByMerge(); relink { // read under f.mu, which the merge holds
			if added, err = f.relinkLocked(tx, of.ino, &n); err != nil {
				return err
			}
		}
		if err := f.putInode(tx, of.ino, &n); err != nil {
			return err
		}
		if f.jr != nil {
			f.jr.cur.checks = append(f.jr.cur.checks, spoolCheck{id: of.spID, digest: digest})
		}
		return bput(tx, bPending, be64(of.spID), encodePending(pendingRec{Ino: of.ino, Size: size,
			Base: of.sp.baseC, BaseLen: of.sp.baseLen}))
	})
	if err == nil {
		if f.unsynced == nil {
			f.unsynced = map[uint64]bool{}
		}
		f.unsynced[of.spID] = true
		if relink {
			of.amu.Lock()
			of.unlinked, of.byMerge = false, false
			of.amu.Unlock()
		}
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if relink {
		f.relinked(of, added)
	}
	of.dirty, of.frozen = false, true
	of.amu.Lock()
	of.dirtyHint = false
	of.amu.Unlock()
	f.enqueueSeal(of.spID)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Fsync returns once the content is stored and a root referencing it is written. A
// failure is logged with its reason (programs see only EIO).
func (h *Handle) Fsync(ctx context.Context) error {
	return h.f.fsyncErr(h.of.ino, h.fsync(ctx))
}

func (h *Handle) fsync(ctx context.Context) error {
	f := h.f
	if f.ro {
		return nil
	}
	if err := f.recordOpen(h.of); err != nil {
		return err
	}
	if h.of.isUnlinked() {
		return nil
	}
	return f.storeIno(ctx, h.of.ino)
}

// FsyncIno is fsync(2) on any descriptor of a regular file, also one that never wrote (a
// fresh read-only `sync FILE`): writes not yet recorded (of any handle) are recorded, then
// the last recorded version is sealed and stored and a root referencing it written.
func (f *FS) FsyncIno(ctx context.Context, ino Ino) error {
	if f.ro {
		return nil
	}
	return f.fsyncErr(ino, f.fsyncIno(ctx, ino))
}

// fsyncErr logs a failed fsync with its reason; a cancelled one is EINTR (never EIO: a
// wrapped cancellation of a store call carries EIO).
func (f *FS) fsyncErr(ino Ino, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		f.log.Warn("core: fsync interrupted", "ino", uint64(ino), "err", err)
		return errnoErr(syscall.EINTR, "fsync interrupted")
	}
	f.log.Error("core: fsync failed", "ino", uint64(ino), "err", err)
	return err
}

func (f *FS) fsyncIno(ctx context.Context, ino Ino) error {
	of := f.refOpen(ino)
	if of != nil {
		err := f.recordOpen(of)
		unlinked := of.isUnlinked()
		if err = errors.Join(err, f.releaseOpen(of)); err != nil || unlinked {
			return err
		}
	}
	return f.storeIno(ctx, ino)
}

// storeIno seals the recorded spool of ino, if any, and commits a root. A newer close that
// supersedes the spool meanwhile is sealed too (else a first version would be left out of
// the root: the root names only sealed content).
func (f *FS) storeIno(ctx context.Context, ino Ino) error {
	if err := f.ackHold(ino); err != nil { // fsync acknowledges the recorded version
		return err
	}
	if err := f.sealIno(ctx, ino); err != nil {
		return err
	}
	return leftOutOnly(f.commitNow(ctx), ino) // another file's lost object is not this fsync's
}

// sealIno seals and stores the recorded spool of ino, if any (and a newer one that replaced
// it meanwhile), without committing a root.
func (f *FS) sealIno(ctx context.Context, ino Ino) error {
	for try := 0; ; try++ {
		var spool uint64
		f.mu.Lock()
		err := f.viewLocked(func(tx *bolt.Tx) error {
			n, err := f.getInode(tx, ino)
			spool = n.Spool
			return err
		})
		f.mu.Unlock()
		if err != nil {
			return err
		}
		if spool == 0 || try >= 8 {
			break
		}
		if err := f.sealNow(ctx, spool); err != nil {
			return err
		}
	}
	return nil
}

// Release frees the handle (after the last close; errors here are not seen by programs).
// Unflushed writes are flushed first.
func (h *Handle) Release() error {
	h.mu.Lock()
	if h.done {
		h.mu.Unlock()
		return nil
	}
	h.done = true
	h.mu.Unlock()
	var err error
	if h.wrote.Load() {
		err = h.f.flushOpen(h.of)
	}
	return errors.Join(err, h.f.releaseOpen(h.of))
}

// Allocate is fallocate(2) for modes 0 and FALLOC_FL_KEEP_SIZE. Mode 0 extends the file
// with zeros up to off+length when that is past the end (like a truncate that grows; the
// zeros take no spool space). KEEP_SIZE changes nothing: the store has no preallocation and
// the spool is sparse, so there is nothing to reserve (gocryptfs does the same for its
// ciphertext). Other modes are refused by the caller (EOPNOTSUPP).
func (h *Handle) Allocate(off, length int64, keepSize bool) error {
	if !h.write {
		return errnoErr(syscall.EBADF, "handle not open for writing")
	}
	if off < 0 || length <= 0 {
		return errnoErr(syscall.EINVAL, "fallocate of %d bytes at %d", length, off)
	}
	end := off + length
	if end > dedup.MaxPlainSize || end < off {
		return errnoErr(syscall.EFBIG, "fallocate past the maximum file size")
	}
	if keepSize {
		return nil
	}
	of := h.of
	of.mu.Lock()
	defer of.mu.Unlock()
	if err := of.ensureSpool(false); err != nil { // cheap: an empty overlay
		return err
	}
	if end <= of.curSize() {
		return nil
	}
	if err := of.truncateLocked(end); err != nil {
		return err
	}
	h.wrote.Store(true)
	return nil
}
