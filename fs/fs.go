// Package fs adapts the FUSE-free core (fs/core) to bazil.org/fuse.
//
// It owns what only matters at the kernel boundary: the mapping of errors to bare errnos
// (toErrno, which is fs/fuseerr), node identity (one *Node per inode, so the kernel sees one
// NodeID per inode and hard links alias correctly), cache validity, open-handle
// bookkeeping for fsync and for fstat of unlinked files, and the hook for the virtual
// `.similar/` tree at the root.
//
// The serving process must never access its own mount (bazil/fuse#264): tests and tools
// reach the mount from another process.
package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/imgfs/imgfs/fs/core"
	"github.com/imgfs/imgfs/fs/fuseerr"
)

// SimilarName is the name of the virtual near-duplicate tree at the mount root.
const SimilarName = ".similar"

// Similar is the hook for the near-duplicate tree. When Options.Similar is non-nil the root
// directory lists SimilarName and Lookup(SimilarName) returns Node(). The tree's nodes are
// the implementer's own (SimilarTree, similar_nodes.go); they set short Attr.Valid /
// EntryValid (about 1 s), since their content changes behind the kernel's back.
type Similar interface {
	Node() fusefs.Node
}

// Options configure Mount.
type Options struct {
	ReadOnly bool
	// Similar, when non-nil, adds the .similar/ tree at the root.
	Similar Similar
	Logger  *slog.Logger
	// AttrValid and EntryValid are the kernel cache times for the real tree; every change
	// passes through this process, so they can be long. Zero means one minute.
	AttrValid, EntryValid time.Duration
	// FUSEDebug logs every FUSE request (very verbose).
	FUSEDebug bool
	// ExtraMountOptions are appended to the defaults (see mountOptions).
	ExtraMountOptions []fuse.MountOption
}

// FS is the bazil file system over a core.FS.
type FS struct {
	core *core.FS
	opts Options
	log  *slog.Logger

	mu    sync.Mutex
	nodes map[core.Ino]*Node
	srv   *fusefs.Server // set by Mount: kernel cache invalidation (refresh.go)
	conn  *fuse.Conn     // set by Mount: attribute-only invalidation (Node.killSUIDGID)
}

// New returns the adapter; Mount uses it. Exposed for tests that serve on their own conn.
func New(c *core.FS, opts Options) *FS {
	if opts.AttrValid == 0 {
		opts.AttrValid = time.Minute
	}
	if opts.EntryValid == 0 {
		opts.EntryValid = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &FS{core: c, opts: opts, log: opts.Logger, nodes: map[core.Ino]*Node{}}
}

var (
	_ fusefs.FS         = (*FS)(nil)
	_ fusefs.FSStatfser = (*FS)(nil)
)

// Root implements fusefs.FS.
func (f *FS) Root() (fusefs.Node, error) {
	a, err := f.core.GetAttr(core.RootIno)
	if err != nil {
		return nil, toErrno(f.log, "root", err)
	}
	return f.node(a), nil
}

// Statfs implements fusefs.FSStatfser.
func (f *FS) Statfs(ctx context.Context, req *fuse.StatfsRequest, resp *fuse.StatfsResponse) error {
	s, err := f.core.Statfs()
	if err != nil {
		return toErrno(f.log, "statfs", err)
	}
	resp.Blocks, resp.Bfree, resp.Bavail = s.Blocks, s.Bfree, s.Bavail
	resp.Files, resp.Ffree = s.Files, s.Ffree
	resp.Bsize = s.Bsize
	if resp.Bsize == 0 {
		resp.Bsize = 4096
	}
	resp.Frsize = resp.Bsize
	resp.Namelen = 255
	return nil
}

// node returns the one *Node for a.Ino, creating it if the kernel does not hold it yet.
func (f *FS) node(a core.Attr) *Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.nodes[a.Ino]
	if n == nil {
		n = &Node{fs: f, ino: a.Ino, handles: map[*Handle]struct{}{}}
		f.nodes[a.Ino] = n
	}
	n.mu.Lock()
	n.last = a
	n.mu.Unlock()
	return n
}

func (f *FS) forget(n *Node) {
	f.mu.Lock()
	if f.nodes[n.ino] == n {
		delete(f.nodes, n.ino)
	}
	f.mu.Unlock()
}

// Mounted is a mounted, not yet (or being) served imgfs.
type Mounted struct {
	Dir  string
	FS   *FS
	conn *fuse.Conn
	srv  *fusefs.Server
}

// mountOptions are the defaults: cold reads went from 55 MB/s to 0.5-1.1 GB/s with
// MaxReadahead + AsyncRead (the kernel reads ahead 1 MiB in parallel requests).
// HandleKillPriv: the kernel no longer asks for security.capability before every write
// (a round trip per write, docs/perf.md); the file system clears set-user-ID and
// set-group-ID itself (Node.killSUIDGID).
func mountOptions(opts Options) []fuse.MountOption {
	o := []fuse.MountOption{
		fuse.FSName("imgfs"),
		fuse.Subtype("imgfs"),
		fuse.MaxReadahead(1 << 20),
		fuse.AsyncRead(),
		fuse.MaxBackground(64),
		fuse.CongestionThreshold(48),
		fuse.DefaultPermissions(),
		fuse.HandleKillPriv(),
	}
	if opts.ReadOnly {
		o = append(o, fuse.ReadOnly())
	}
	return append(o, opts.ExtraMountOptions...)
}

// Mount mounts c at dir. Call Serve next; it returns after the file system is unmounted.
func Mount(dir string, c *core.FS, opts Options) (*Mounted, error) {
	if _, err := exec.LookPath("fusermount3"); err != nil {
		return nil, errors.New("fusermount3 not found: install the fuse3 package (apt-get install fuse3)")
	}
	conn, err := fuse.Mount(dir, mountOptions(opts)...)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	f := New(c, opts)
	cfg := &fusefs.Config{}
	if opts.FUSEDebug {
		cfg.Debug = func(msg interface{}) { f.log.Debug("fuse", "msg", fmt.Sprint(msg)) }
	}
	srv := fusefs.New(conn, cfg)
	f.srv = srv
	f.conn = conn
	c.SetOnMerge(f.invalidate)
	return &Mounted{Dir: dir, FS: f, conn: conn, srv: srv}, nil
}

// Server is the bazil server, for invalidation calls.
func (m *Mounted) Server() *fusefs.Server { return m.srv }

// Serve serves requests until the file system is unmounted, waits for in-flight
// requests, and closes the FUSE connection.
func (m *Mounted) Serve() error {
	err := m.srv.Serve(m.FS)
	if cerr := m.conn.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrBusy is returned by Unmount while something still uses the mount.
var ErrBusy = errors.New("mount is busy")

// Unmount asks the kernel to unmount (fusermount3 -u), retrying for about a second while
// the mount is busy (desktop probes, a closing shell). A mount still busy after that gives
// an error matching ErrBusy; the mount stays up and keeps serving.
func Unmount(dir string) error {
	var err error
	for i := 0; i < 10; i++ {
		err = fuse.Unmount(dir)
		if err == nil {
			return nil
		}
		if !strings.Contains(strings.ToLower(err.Error()), "busy") {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%w: %s is in use (a shell's cwd or an open file inside it); close it and retry, or force it with fusermount3 -u -z %s", ErrBusy, dir, dir)
}

// LazyUnmount detaches the mount now; it goes away when the last user leaves (fusermount3 -u -z).
func LazyUnmount(dir string) error {
	out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3 -u -z %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// toErrno is the error mapping at the FUSE boundary (fs/fuseerr): every handler returns
// through it.
var toErrno = fuseerr.Errno

// Abort closes the FUSE connection without unmounting: Serve returns, in-flight requests
// fail. Use after LazyUnmount when forcing a shutdown.
func (m *Mounted) Abort() error { return m.conn.Close() }
