package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/imgfs/imgfs/fs/core"
)

// Node is one inode as the kernel sees it. FS.node keeps exactly one *Node per inode while
// the kernel references it (a new *Node would be a new NodeID to the kernel), so the
// kernel's page cache and attributes are shared between hard links and between lookups.
//
// A directory's Node is also its own Handle (ReadDirAll); files get a *Handle per open.
type Node struct {
	fs  *FS
	ino core.Ino

	mu      sync.Mutex
	parent  core.Ino             // the directory it was last looked up in (for "..")
	handles map[*Handle]struct{} // open file handles (fsync, fstat after unlink)
	last    core.Attr            // last attributes seen
}

var (
	_ fusefs.Node                = (*Node)(nil)
	_ fusefs.NodeRequestLookuper = (*Node)(nil)
	_ fusefs.NodeSetattrer       = (*Node)(nil)
	_ fusefs.NodeCreater         = (*Node)(nil)
	_ fusefs.NodeOpener          = (*Node)(nil)
	_ fusefs.NodeMkdirer         = (*Node)(nil)
	_ fusefs.NodeRemover         = (*Node)(nil)
	_ fusefs.NodeRenamer         = (*Node)(nil)
	_ fusefs.NodeSymlinker       = (*Node)(nil)
	_ fusefs.NodeReadlinker      = (*Node)(nil)
	_ fusefs.NodeLinker          = (*Node)(nil)
	_ fusefs.NodeFsyncer         = (*Node)(nil)
	_ fusefs.NodeForgetter       = (*Node)(nil)
	_ fusefs.NodeGetxattrer      = (*Node)(nil)
	_ fusefs.NodeSetxattrer      = (*Node)(nil)
	_ fusefs.NodeListxattrer     = (*Node)(nil)
	_ fusefs.NodeRemovexattrer   = (*Node)(nil)
	_ fusefs.HandleReadDirAller  = (*Node)(nil)
)

// Ino is the node's inode number.
func (n *Node) Ino() core.Ino { return n.ino }

func (n *Node) err(op string, err error) error { return toErrno(n.fs.log, op, err) }

func (n *Node) fillAttr(a core.Attr, out *fuse.Attr) {
	out.Valid = n.fs.opts.AttrValid
	out.Inode = uint64(a.Ino)
	if a.Size > 0 {
		out.Size = uint64(a.Size)
	}
	out.Blocks = (out.Size + 511) / 512
	out.Atime, out.Mtime, out.Ctime = a.Atime, a.Mtime, a.Ctime
	out.Mode = a.Mode
	out.Nlink = a.Nlink // 0 for an unlinked file that is still open (fstat)
	out.Uid, out.Gid = a.Uid, a.Gid
	out.BlockSize = 128 << 10 // cp and friends size their buffers by st_blksize
}

// Attr implements fusefs.Node. An unlinked file that is still open keeps its last
// attributes, with Nlink 0, until the last handle is released (fstat on an unlinked fd).
func (n *Node) Attr(ctx context.Context, out *fuse.Attr) error {
	a, err := n.fs.core.GetAttr(n.ino)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		if errors.Is(err, syscall.ENOENT) && len(n.handles) > 0 {
			n.fillAttr(n.last, out)
			out.Nlink = 0
			out.Valid = 0
			return nil
		}
		return n.err("getattr", err)
	}
	n.last = a
	n.fillAttr(a, out)
	return nil
}

func (n *Node) isRoot() bool { return n.ino == core.RootIno }

func (n *Node) similarName(name string) bool {
	return n.isRoot() && name == SimilarName && n.fs.opts.Similar != nil
}

// Lookup implements fusefs.NodeRequestLookuper.
func (n *Node) Lookup(ctx context.Context, req *fuse.LookupRequest, resp *fuse.LookupResponse) (fusefs.Node, error) {
	if n.similarName(req.Name) {
		resp.EntryValid = time.Second
		return n.fs.opts.Similar.Node(), nil
	}
	a, err := n.fs.core.Lookup(n.ino, req.Name)
	if err != nil {
		return nil, n.err("lookup", err)
	}
	resp.EntryValid = n.fs.opts.EntryValid
	return n.child(a), nil
}

// child returns the node of a, an entry of directory n.
func (n *Node) child(a core.Attr) *Node {
	c := n.fs.node(a)
	if a.Mode.IsDir() {
		c.mu.Lock()
		c.parent = n.ino
		c.mu.Unlock()
	}
	return c
}

// ReadDirAll implements fusefs.HandleReadDirAller (a directory's Node is its handle).
func (n *Node) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	ents, err := n.fs.core.ReadDir(n.ino)
	if err != nil {
		return nil, n.err("readdir", err)
	}
	out := make([]fuse.Dirent, 0, len(ents)+3)
	n.mu.Lock()
	parent := n.parent
	n.mu.Unlock()
	if parent == 0 {
		parent = core.RootIno
	}
	out = append(out, fuse.Dirent{Inode: uint64(n.ino), Type: fuse.DT_Dir, Name: "."},
		fuse.Dirent{Inode: uint64(parent), Type: fuse.DT_Dir, Name: ".."})
	if n.isRoot() && n.fs.opts.Similar != nil {
		var a fuse.Attr
		if err := n.fs.opts.Similar.Node().Attr(ctx, &a); err == nil {
			out = append(out, fuse.Dirent{Inode: a.Inode, Type: fuse.DT_Dir, Name: SimilarName})
		}
	}
	for _, e := range ents {
		if n.similarName(e.Name) {
			continue // shadowed by the virtual tree
		}
		out = append(out, fuse.Dirent{Inode: uint64(e.Ino), Type: direntType(e.Mode), Name: e.Name})
	}
	return out, nil
}

func direntType(m os.FileMode) fuse.DirentType {
	switch {
	case m.IsDir():
		return fuse.DT_Dir
	case m&os.ModeSymlink != 0:
		return fuse.DT_Link
	case m.IsRegular():
		return fuse.DT_File
	case m&os.ModeNamedPipe != 0:
		return fuse.DT_FIFO
	case m&os.ModeSocket != 0:
		return fuse.DT_Socket
	}
	return fuse.DT_Unknown
}

// Setattr implements fusefs.NodeSetattrer: chmod, chown, truncate (also open(O_TRUNC)), utimes.
func (n *Node) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	var r core.SetAttrRequest
	if req.Valid.Mode() {
		m := req.Mode & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
		r.Mode = &m
	}
	if req.Valid.SetattrKillSUIDGID() {
		if err := n.killSUIDGID(req.Node, r.Mode); err != nil {
			return n.err("setattr", err)
		}
	}
	if req.Valid.Uid() {
		u := req.Uid
		r.Uid = &u
	}
	if req.Valid.Gid() {
		g := req.Gid
		r.Gid = &g
	}
	if req.Valid.Size() {
		s := int64(req.Size)
		r.Size = &s
	}
	now := time.Now()
	if req.Valid.AtimeNow() {
		r.Atime = &now
	} else if req.Valid.Atime() {
		t := req.Atime
		r.Atime = &t
	}
	if req.Valid.MtimeNow() {
		r.Mtime = &now
	} else if req.Valid.Mtime() {
		t := req.Mtime
		r.Mtime = &t
	}
	a, err := n.fs.core.SetAttr(n.ino, r)
	if err != nil {
		return n.err("setattr", err)
	}
	n.mu.Lock()
	n.last = a
	n.fillAttr(a, &resp.Attr)
	n.mu.Unlock()
	return nil
}

// killSUIDGID clears set-user-ID, and set-group-ID when the file is group-executable, as a
// write, truncate or chown by a process without CAP_FSETID must: with HandleKillPriv (fs.go)
// the kernel leaves that to the file system. mode, when set, is a mode the same request
// sets; it is changed in place instead. id is the node's id in the request.
func (n *Node) killSUIDGID(id fuse.NodeID, mode *os.FileMode) error {
	if mode != nil {
		*mode = killedMode(*mode)
		return nil
	}
	a, err := n.fs.core.GetAttr(n.ino)
	if err != nil {
		return err
	}
	if !a.Mode.IsRegular() {
		return nil
	}
	m := a.Mode & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
	k := killedMode(m)
	if k == m {
		return nil
	}
	na, err := n.fs.core.SetAttr(n.ino, core.SetAttrRequest{Mode: &k})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.last = na
	n.mu.Unlock()
	if n.fs.conn != nil {
		// A write's answer carries no attributes: drop the kernel's copy. Attributes only
		// (offset -1): the kernel holds the pages of the write in progress.
		n.fs.ignoreNotCached("invalidate attributes", n.fs.conn.InvalidateNode(id, -1, 0))
	}
	return nil
}

func killedMode(m os.FileMode) os.FileMode {
	k := m &^ os.ModeSetuid
	if m&0o010 != 0 {
		k &^= os.ModeSetgid
	}
	return k
}

// Create implements fusefs.NodeCreater.
func (n *Node) Create(ctx context.Context, req *fuse.CreateRequest, resp *fuse.CreateResponse) (fusefs.Node, fusefs.Handle, error) {
	if n.similarName(req.Name) {
		return nil, nil, syscall.EEXIST
	}
	// The kernel sends CREATE for an existing file too (open with O_CREAT|O_TRUNC): the
	// flags carry O_TRUNC and O_EXCL, so pass them all.
	a, ch, err := n.fs.core.CreateFlags(n.ino, req.Name, req.Mode&^req.Umask, int(req.Flags))
	if err != nil {
		return nil, nil, n.err("create", err)
	}
	child := n.fs.node(a)
	resp.EntryValid = n.fs.opts.EntryValid
	h := child.addHandle(ch)
	return child, h, nil
}

// Open implements fusefs.NodeOpener.
func (n *Node) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (fusefs.Handle, error) {
	if req.Dir {
		return n, nil
	}
	ch, err := n.fs.core.OpenFile(n.ino, int(req.Flags))
	if err != nil {
		return nil, n.err("open", err)
	}
	if req.OpenFlags&fuse.OpenKillSUIDGID != 0 {
		if err := n.killSUIDGID(req.Node, nil); err != nil {
			ch.Release()
			return nil, n.err("open", err)
		}
	}
	// Every change passes through this mount, so the kernel's page cache stays right across
	// opens; it still drops pages when size or mtime change.
	resp.Flags |= fuse.OpenKeepCache
	return n.addHandle(ch), nil
}

func (n *Node) addHandle(ch *core.Handle) *Handle {
	h := &Handle{node: n, h: ch}
	n.mu.Lock()
	n.handles[h] = struct{}{}
	n.mu.Unlock()
	return h
}

// Mkdir implements fusefs.NodeMkdirer.
func (n *Node) Mkdir(ctx context.Context, req *fuse.MkdirRequest) (fusefs.Node, error) {
	if n.similarName(req.Name) {
		return nil, syscall.EEXIST
	}
	a, err := n.fs.core.Mkdir(n.ino, req.Name, (req.Mode&^req.Umask)|os.ModeDir)
	if err != nil {
		return nil, n.err("mkdir", err)
	}
	return n.child(a), nil
}

// Remove implements fusefs.NodeRemover (unlink and rmdir).
func (n *Node) Remove(ctx context.Context, req *fuse.RemoveRequest) error {
	if n.similarName(req.Name) {
		return syscall.EPERM
	}
	return n.err("remove", n.fs.core.Remove(n.ino, req.Name, req.Dir))
}

// Rename implements fusefs.NodeRenamer; the core replaces an existing target atomically.
func (n *Node) Rename(ctx context.Context, req *fuse.RenameRequest, newDir fusefs.Node) error {
	nd, ok := newDir.(*Node)
	if !ok {
		return syscall.EXDEV
	}
	if n.similarName(req.OldName) || nd.similarName(req.NewName) {
		return syscall.EPERM
	}
	return n.err("rename", n.fs.core.Rename(n.ino, req.OldName, nd.ino, req.NewName))
}

// Symlink implements fusefs.NodeSymlinker.
func (n *Node) Symlink(ctx context.Context, req *fuse.SymlinkRequest) (fusefs.Node, error) {
	if n.similarName(req.NewName) {
		return nil, syscall.EEXIST
	}
	a, err := n.fs.core.Symlink(n.ino, req.NewName, req.Target)
	if err != nil {
		return nil, n.err("symlink", err)
	}
	return n.fs.node(a), nil
}

// Readlink implements fusefs.NodeReadlinker.
func (n *Node) Readlink(ctx context.Context, req *fuse.ReadlinkRequest) (string, error) {
	t, err := n.fs.core.Readlink(n.ino)
	if err != nil {
		return "", n.err("readlink", err)
	}
	return t, nil
}

// Link implements fusefs.NodeLinker; it returns the same *Node as old.
func (n *Node) Link(ctx context.Context, req *fuse.LinkRequest, old fusefs.Node) (fusefs.Node, error) {
	on, ok := old.(*Node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if n.similarName(req.NewName) {
		return nil, syscall.EEXIST
	}
	a, err := n.fs.core.Link(on.ino, n.ino, req.NewName)
	if err != nil {
		return nil, n.err("link", err)
	}
	return n.fs.node(a), nil
}

// Fsync implements fusefs.NodeFsyncer (bazil puts it on the Node). For a file, on any
// descriptor (also a fresh read-only one, `sync FILE`), it records writes not yet closed,
// stores the file's last version and writes a root referencing it. For a directory it
// waits until nothing is pending. A failure is logged with its reason.
func (n *Node) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	// A signal to the calling thread (SIGCHLD of a program it runs, Go's preemption) makes
	// the kernel send INTERRUPT, which cancels ctx. fsync is bounded work: finish it rather
	// than fail it (a cancelled store upload used to surface as EIO).
	ctx = context.WithoutCancel(ctx)
	var err error
	if req.Dir {
		err = n.fs.core.Sync(ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			n.fs.log.Error("imgfs: fsync of a directory failed", "ino", uint64(n.ino), "err", err)
		}
	} else {
		err = n.fs.core.FsyncIno(ctx, n.ino) // logs its failures
	}
	return n.err("fsync", err)
}

// Forget implements fusefs.NodeForgetter: the kernel dropped the node.
func (n *Node) Forget() { n.fs.forget(n) }

// systemXattr reports names of the "system." namespace (POSIX ACLs: system.posix_acl_*).
// imgfs has no ACLs: it answers EOPNOTSUPP for them, as a file system without ACL support
// does, so cp -a and rsync -A fall back to chmod. Storing them as opaque values instead
// would make `cp -a` set modes through an ACL that never reaches st_mode.
func systemXattr(name string) bool { return strings.HasPrefix(name, "system.") }

// Getxattr implements fusefs.NodeGetxattrer.
func (n *Node) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	if systemXattr(req.Name) {
		return syscall.EOPNOTSUPP
	}
	v, err := n.fs.core.GetXattr(n.ino, req.Name)
	if err != nil {
		return n.err("getxattr", err)
	}
	resp.Xattr = v
	return nil
}

// Listxattr implements fusefs.NodeListxattrer.
func (n *Node) Listxattr(ctx context.Context, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	names, err := n.fs.core.ListXattr(n.ino)
	if err != nil {
		return n.err("listxattr", err)
	}
	for _, name := range names {
		if !systemXattr(name) {
			resp.Append(name)
		}
	}
	return nil
}

// Setxattr implements fusefs.NodeSetxattrer.
func (n *Node) Setxattr(ctx context.Context, req *fuse.SetxattrRequest) error {
	if systemXattr(req.Name) {
		return syscall.EOPNOTSUPP
	}
	v := append([]byte(nil), req.Xattr...) // bazil reuses the request buffer
	return n.err("setxattr", n.fs.core.SetXattr(n.ino, req.Name, v, int(req.Flags)))
}

// Removexattr implements fusefs.NodeRemovexattrer.
func (n *Node) Removexattr(ctx context.Context, req *fuse.RemovexattrRequest) error {
	if systemXattr(req.Name) {
		return syscall.EOPNOTSUPP
	}
	return n.err("removexattr", n.fs.core.RemoveXattr(n.ino, req.Name))
}

// Handle is one open file.
type Handle struct {
	node *Node
	h    *core.Handle
}

var (
	_ fusefs.HandleReader     = (*Handle)(nil)
	_ fusefs.HandleWriter     = (*Handle)(nil)
	_ fusefs.HandleFlusher    = (*Handle)(nil)
	_ fusefs.HandleReleaser   = (*Handle)(nil)
	_ fusefs.HandleFAllocater = (*Handle)(nil)
)

// Read implements fusefs.HandleReader.
func (h *Handle) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	buf := resp.Data[:0] // bazil allocates it with room for req.Size
	if cap(buf) < req.Size {
		buf = make([]byte, req.Size)
	}
	buf = buf[:req.Size]
	k, err := h.h.ReadAt(buf, req.Offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return h.node.err("read", err)
	}
	resp.Data = buf[:k]
	return nil
}

// Write implements fusefs.HandleWriter. The core copies req.Data (bazil reuses it).
func (h *Handle) Write(ctx context.Context, req *fuse.WriteRequest, resp *fuse.WriteResponse) error {
	if req.Flags&fuse.WriteKillSUIDGID != 0 {
		if err := h.node.killSUIDGID(req.Node, nil); err != nil {
			return h.node.err("write", err)
		}
	}
	k, err := h.h.WriteAt(req.Data, req.Offset)
	resp.Size = k
	if err != nil {
		return h.node.err("write", err)
	}
	return nil
}

// FAllocate implements fusefs.HandleFAllocater: fallocate(2) modes 0 and KEEP_SIZE
// (core.Handle.Allocate); punching holes and other modes are EOPNOTSUPP.
func (h *Handle) FAllocate(ctx context.Context, req *fuse.FAllocateRequest) error {
	if req.Mode&^fuse.FAllocateKeepSize != 0 {
		return syscall.EOPNOTSUPP
	}
	err := h.h.Allocate(int64(req.Offset), int64(req.Length), req.Mode&fuse.FAllocateKeepSize != 0)
	return h.node.err("fallocate", err)
}

// Flush implements fusefs.HandleFlusher: close(2) returns its error, so durability of the
// spool (docs/core.md, "What Flush, Fsync, Sync and Close guarantee") is decided here.
func (h *Handle) Flush(ctx context.Context, req *fuse.FlushRequest) error {
	return h.node.err("flush", h.h.Flush())
}

// Release implements fusefs.HandleReleaser; the kernel ignores its error (bazil/fuse#26).
func (h *Handle) Release(ctx context.Context, req *fuse.ReleaseRequest) error {
	err := h.h.Release()
	h.node.mu.Lock()
	delete(h.node.handles, h)
	h.node.mu.Unlock()
	if err != nil {
		h.node.fs.log.Error("imgfs: release failed", "ino", uint64(h.node.ino), "err", err)
	}
	return nil
}
