package similar

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/imgfs/imgfs/fs/core"
	"github.com/imgfs/imgfs/fs/fuseerr"
)

// XattrSimilarity is the xattr on each .similar/ entry that holds its score.
const XattrSimilarity = "user.imgfs.similarity"

// The .similar/ tree:
//
//	.similar/                 mirrors the root: directories holding a file with a match,
//	.similar/DIR/             and files with at least one match (as directories)
//	.similar/DIR/photo.jpg/   read-only directory of symlinks, best match first
//	.similar/DIR/photo.jpg/IMG_1.jpg -> ../../../DIR2/IMG_1.jpg
//
// The score of an entry is its xattr user.imgfs.similarity, served to anything that asks
// the file system; but Linux refuses user.* xattrs on symlinks before asking (ENODATA), so
// the match directory carries the same xattr with one "score<TAB>name" line per entry.
//
// Any existing file can be looked up (an empty directory when it has no match). Entry
// names are the matches' base names; when several matches share one, the best keeps it
// and the next get "stem~2.ext", "stem~3.ext", ... (the first free one). Every node's entry
// and attribute validity is Config.EntryValid (1 s), so new copies show up without
// invalidation. Serving it reads only the local working copy: no store request.

// Node returns the .similar/ directory node (fs.Options.Similar).
func (x *Indexer) Node() fusefs.Node {
	x.rootOnce.Do(func() { x.root = &dirNode{x: x, ino: core.RootIno, rel: ""} })
	return x.root
}

// SetServer implements fs.ServerSetter (nothing to invalidate: validity is short).
func (x *Indexer) SetServer(*fusefs.Server) {}

// snapshot is the set of files with a match and their ancestor directories, rebuilt at
// most once per EntryValid.
type snapshot struct {
	at    time.Time
	gen   uint64
	files map[core.Ino]bool
	dirs  map[string]bool // slash paths from the root ("" = root)
}

func (x *Indexer) snap() *snapshot {
	x.snapMu.Lock()
	defer x.snapMu.Unlock()
	x.mu.Lock()
	gen := x.gen
	var cands []core.Ino
	for id, inos := range x.inos {
		if len(inos) >= 2 || len(x.nbr[id]) > 0 {
			cands = append(cands, inos...)
		}
	}
	x.mu.Unlock()
	if s := x.cur; s != nil && s.gen == gen && time.Since(s.at) < x.cfg.EntryValid {
		return s
	}
	s := &snapshot{at: time.Now(), gen: gen, files: map[core.Ino]bool{}, dirs: map[string]bool{"": true}}
	for _, ino := range cands {
		if !x.hasMatch(ino) {
			continue
		}
		p, err := x.v.Path(ino)
		if err != nil || inTrash(p) {
			continue
		}
		s.files[ino] = true
		for d := path.Dir(trimSlash(p)); d != "." && d != "/" && d != "" && !s.dirs[d]; d = path.Dir(d) {
			s.dirs[d] = true
		}
	}
	x.cur = s
	return s
}

// dirNode mirrors a real directory.
type dirNode struct {
	x   *Indexer
	ino core.Ino
	rel string
}

var (
	_ fusefs.NodeRequestLookuper = (*dirNode)(nil)
	_ fusefs.HandleReadDirAller  = (*dirNode)(nil)
)

func (d *dirNode) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = os.ModeDir | 0o555
	a.Valid = d.x.cfg.EntryValid
	a.Nlink = 2
	if ra, err := d.x.v.GetAttr(d.ino); err == nil {
		a.Mtime, a.Ctime, a.Atime = ra.Mtime, ra.Ctime, ra.Atime
		a.Uid, a.Gid = ra.Uid, ra.Gid
	}
	return nil
}

func (d *dirNode) Lookup(ctx context.Context, req *fuse.LookupRequest, resp *fuse.LookupResponse) (fusefs.Node, error) {
	resp.EntryValid = d.x.cfg.EntryValid
	ra, err := d.x.v.Lookup(d.ino, req.Name)
	if err != nil {
		return nil, fuseerr.Errno(d.x.log, "similar lookup", err)
	}
	rel := path.Join(d.rel, req.Name)
	switch {
	case ra.Mode.IsDir():
		return &dirNode{x: d.x, ino: ra.Ino, rel: rel}, nil
	case ra.Mode.IsRegular():
		return &matchDir{x: d.x, ino: ra.Ino, rel: rel, attr: ra}, nil
	}
	return nil, syscall.ENOENT
}

func (d *dirNode) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	ents, err := d.x.v.ReadDir(d.ino)
	if err != nil {
		return nil, fuseerr.Errno(d.x.log, "similar readdir", err)
	}
	s := d.x.snap()
	var out []fuse.Dirent
	for _, e := range ents {
		switch {
		case e.Mode.IsDir() && s.dirs[path.Join(d.rel, e.Name)]:
			out = append(out, fuse.Dirent{Type: fuse.DT_Dir, Name: e.Name})
		case e.Mode.IsRegular() && s.files[e.Ino]:
			out = append(out, fuse.Dirent{Type: fuse.DT_Dir, Name: e.Name})
		}
	}
	return out, nil
}

// matchDir is .similar/…/photo.jpg: one symlink per match.
type matchDir struct {
	x    *Indexer
	ino  core.Ino
	rel  string // the photo's path as looked up (targets are relative to it)
	attr core.Attr
}

var (
	_ fusefs.NodeRequestLookuper = (*matchDir)(nil)
	_ fusefs.HandleReadDirAller  = (*matchDir)(nil)
	_ fusefs.NodeGetxattrer      = (*matchDir)(nil)
	_ fusefs.NodeListxattrer     = (*matchDir)(nil)
)

// Getxattr on a match directory: user.imgfs.similarity lists every entry as
// "score<TAB>name" lines, best first. Linux answers ENODATA for user.* xattrs of symlinks
// without asking the file system (fs/xattr.c, xattr_permission), so the per-entry xattr is
// unreachable through the kernel; this is where programs read the scores.
func (m *matchDir) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	if req.Name != XattrSimilarity {
		return fuse.ErrNoXattr
	}
	var b strings.Builder
	for _, e := range m.entries() {
		b.WriteString(FormatScore(e.score) + "\t" + e.name + "\n")
	}
	resp.Xattr = []byte(b.String())
	return nil
}

func (m *matchDir) Listxattr(ctx context.Context, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	resp.Append(XattrSimilarity)
	return nil
}

func (m *matchDir) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = os.ModeDir | 0o555
	a.Valid = m.x.cfg.EntryValid
	a.Nlink = 2
	a.Mtime, a.Ctime, a.Atime = m.attr.Mtime, m.attr.Ctime, m.attr.Atime
	a.Uid, a.Gid = m.attr.Uid, m.attr.Gid
	return nil
}

// entries returns the current matches with their unique names and link targets.
func (m *matchDir) entries() []linkNode {
	ms, err := m.x.Query(m.ino, 0, 0)
	if err != nil {
		return nil
	}
	names := UniqueNames(ms)
	up := strings.Repeat("../", strings.Count(m.rel, "/")+2)
	out := make([]linkNode, len(ms))
	for i, mt := range ms {
		out[i] = linkNode{x: m.x, name: names[i], target: up + mt.Path, score: mt.Score}
	}
	return out
}

func (m *matchDir) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	es := m.entries()
	out := make([]fuse.Dirent, len(es))
	for i, e := range es {
		out[i] = fuse.Dirent{Type: fuse.DT_Link, Name: e.name}
	}
	return out, nil
}

func (m *matchDir) Lookup(ctx context.Context, req *fuse.LookupRequest, resp *fuse.LookupResponse) (fusefs.Node, error) {
	resp.EntryValid = m.x.cfg.EntryValid
	for _, e := range m.entries() {
		if e.name == req.Name {
			n := e
			return &n, nil
		}
	}
	return nil, syscall.ENOENT
}

// UniqueNames returns the entry names of ms, in order: each match's base name; a name
// already taken becomes "stem~2.ext", "stem~3.ext", ... (the first that is free), where
// ext is the part from the last dot ("" when none or when the name starts with it).
func UniqueNames(ms []Match) []string {
	taken := map[string]bool{}
	out := make([]string, len(ms))
	for i, m := range ms {
		base := path.Base(m.Path)
		name := base
		if taken[name] {
			stem, ext := base, ""
			if j := strings.LastIndexByte(base, '.'); j > 0 {
				stem, ext = base[:j], base[j:]
			}
			for n := 2; ; n++ {
				name = fmt.Sprintf("%s~%d%s", stem, n, ext)
				if !taken[name] {
					break
				}
			}
		}
		taken[name] = true
		out[i] = name
	}
	return out
}

// linkNode is one match: a symlink with the score as an xattr.
type linkNode struct {
	x      *Indexer
	name   string
	target string
	score  float32
}

var (
	_ fusefs.NodeReadlinker  = (*linkNode)(nil)
	_ fusefs.NodeGetxattrer  = (*linkNode)(nil)
	_ fusefs.NodeListxattrer = (*linkNode)(nil)
)

func (l *linkNode) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = os.ModeSymlink | 0o444
	a.Size = uint64(len(l.target))
	a.Valid = l.x.cfg.EntryValid
	return nil
}

func (l *linkNode) Readlink(ctx context.Context, req *fuse.ReadlinkRequest) (string, error) {
	return l.target, nil
}

// FormatScore is how scores are printed (xattr, CLI).
func FormatScore(s float32) string { return fmt.Sprintf("%.4f", s) }

func (l *linkNode) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	if req.Name != XattrSimilarity {
		return fuse.ErrNoXattr
	}
	resp.Xattr = []byte(FormatScore(l.score))
	return nil
}

func (l *linkNode) Listxattr(ctx context.Context, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	resp.Append(XattrSimilarity)
	return nil
}

// snapshot state lives on the Indexer.
type treeState struct {
	rootOnce sync.Once
	root     *dirNode
	snapMu   sync.Mutex
	cur      *snapshot
}
