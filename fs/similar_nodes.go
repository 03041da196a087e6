package fs

import (
	"context"
	"log/slog"
	"os"
	"path"
	"syscall"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"

	"github.com/imgfs/imgfs/fs/core"
	"github.com/imgfs/imgfs/fs/similar"
)

// The `.similar/` tree's bazil nodes (docs/similar.md, "The .similar/ tree"): a thin
// adapter over the FUSE-free indexer (fs/similar), which decides what the tree shows
// (Indexer.Listing, Indexer.Links). Every node's entry and attribute validity is the
// indexer's EntryValid (1 s), so new copies show up without invalidation. Errors go through
// the boundary's one errno mapping (toErrno).

// SimilarTree returns the .similar/ tree of x, for Options.Similar.
func SimilarTree(x *similar.Indexer, log *slog.Logger) Similar {
	if log == nil {
		log = slog.Default()
	}
	return similarTree{&similarDir{x: x, log: log, ino: core.RootIno, rel: ""}}
}

type similarTree struct{ root *similarDir }

func (t similarTree) Node() fusefs.Node { return t.root }

// similarDir mirrors a real directory.
type similarDir struct {
	x   *similar.Indexer
	log *slog.Logger
	ino core.Ino
	rel string
}

var (
	_ fusefs.NodeRequestLookuper = (*similarDir)(nil)
	_ fusefs.HandleReadDirAller  = (*similarDir)(nil)
)

func (d *similarDir) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = os.ModeDir | 0o555
	a.Valid = d.x.EntryValid()
	a.Nlink = 2
	if ra, err := d.x.Vault().GetAttr(d.ino); err == nil {
		a.Mtime, a.Ctime, a.Atime = ra.Mtime, ra.Ctime, ra.Atime
		a.Uid, a.Gid = ra.Uid, ra.Gid
	}
	return nil
}

func (d *similarDir) Lookup(ctx context.Context, req *fuse.LookupRequest, resp *fuse.LookupResponse) (fusefs.Node, error) {
	resp.EntryValid = d.x.EntryValid()
	ra, err := d.x.Vault().Lookup(d.ino, req.Name)
	if err != nil {
		return nil, toErrno(d.log, "similar lookup", err)
	}
	rel := path.Join(d.rel, req.Name)
	switch {
	case ra.Mode.IsDir():
		return &similarDir{x: d.x, log: d.log, ino: ra.Ino, rel: rel}, nil
	case ra.Mode.IsRegular():
		return &similarMatches{x: d.x, ino: ra.Ino, rel: rel, attr: ra}, nil
	}
	return nil, syscall.ENOENT
}

func (d *similarDir) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	ents, err := d.x.TreeDir(d.ino, d.rel)
	if err != nil {
		return nil, toErrno(d.log, "similar readdir", err)
	}
	out := make([]fuse.Dirent, len(ents))
	for i, e := range ents {
		out[i] = fuse.Dirent{Type: fuse.DT_Dir, Name: e.Name}
	}
	return out, nil
}

// similarMatches is .similar/…/photo.jpg: one symlink per match.
type similarMatches struct {
	x    *similar.Indexer
	ino  core.Ino
	rel  string // the photo's path as looked up (targets are relative to it)
	attr core.Attr
}

var (
	_ fusefs.NodeRequestLookuper = (*similarMatches)(nil)
	_ fusefs.HandleReadDirAller  = (*similarMatches)(nil)
	_ fusefs.NodeGetxattrer      = (*similarMatches)(nil)
	_ fusefs.NodeListxattrer     = (*similarMatches)(nil)
)

// Getxattr: user.imgfs.similarity lists every entry as "score<TAB>name" lines, best first
// (similar.LinksXattr says why the directory carries them).
func (m *similarMatches) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	if req.Name != similar.XattrSimilarity {
		return fuse.ErrNoXattr
	}
	resp.Xattr = similar.LinksXattr(m.x.Links(m.ino, m.rel))
	return nil
}

func (m *similarMatches) Listxattr(ctx context.Context, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	resp.Append(similar.XattrSimilarity)
	return nil
}

func (m *similarMatches) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = os.ModeDir | 0o555
	a.Valid = m.x.EntryValid()
	a.Nlink = 2
	a.Mtime, a.Ctime, a.Atime = m.attr.Mtime, m.attr.Ctime, m.attr.Atime
	a.Uid, a.Gid = m.attr.Uid, m.attr.Gid
	return nil
}

func (m *similarMatches) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	ls := m.x.Links(m.ino, m.rel)
	out := make([]fuse.Dirent, len(ls))
	for i, l := range ls {
		out[i] = fuse.Dirent{Type: fuse.DT_Link, Name: l.Name}
	}
	return out, nil
}

func (m *similarMatches) Lookup(ctx context.Context, req *fuse.LookupRequest, resp *fuse.LookupResponse) (fusefs.Node, error) {
	resp.EntryValid = m.x.EntryValid()
	for _, l := range m.x.Links(m.ino, m.rel) {
		if l.Name == req.Name {
			return &similarLink{x: m.x, l: l}, nil
		}
	}
	return nil, syscall.ENOENT
}

// similarLink is one match: a symlink with the score as an xattr.
type similarLink struct {
	x *similar.Indexer
	l similar.Link
}

var (
	_ fusefs.NodeReadlinker  = (*similarLink)(nil)
	_ fusefs.NodeGetxattrer  = (*similarLink)(nil)
	_ fusefs.NodeListxattrer = (*similarLink)(nil)
)

func (l *similarLink) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = os.ModeSymlink | 0o444
	a.Size = uint64(len(l.l.Target))
	a.Valid = l.x.EntryValid()
	return nil
}

func (l *similarLink) Readlink(ctx context.Context, req *fuse.ReadlinkRequest) (string, error) {
	return l.l.Target, nil
}

// Getxattr answers the score, for completeness: Linux never asks for user.* xattrs of a
// symlink (the match directory carries them).
func (l *similarLink) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	if req.Name != similar.XattrSimilarity {
		return fuse.ErrNoXattr
	}
	resp.Xattr = []byte(similar.FormatScore(l.l.Score))
	return nil
}

func (l *similarLink) Listxattr(ctx context.Context, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	resp.Append(similar.XattrSimilarity)
	return nil
}
