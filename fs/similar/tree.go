package similar

import (
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/imgfs/imgfs/fs/core"
)

// XattrSimilarity is the xattr on each .similar/ entry that holds its score.
const XattrSimilarity = "user.imgfs.similarity"

// What the `.similar/` tree shows (docs/similar.md, "The .similar/ tree"), without FUSE: the
// bazil nodes that serve it are fs/similar_nodes.go.
//
//	.similar/                 mirrors the root: directories holding a file with a match,
//	.similar/DIR/             and files with at least one match (as directories)
//	.similar/DIR/photo.jpg/   read-only directory of symlinks, best match first
//	.similar/DIR/photo.jpg/IMG_1.jpg -> ../../../DIR2/IMG_1.jpg
//
// Entry names are the matches' base names (UniqueNames). Serving it reads only the local
// working copy: no store request.

// EntryValid is the kernel cache time of .similar/ entries and attributes (Config.EntryValid).
func (x *Indexer) EntryValid() time.Duration { return x.cfg.EntryValid }

// Vault is the vault the indexer serves; the tree's directories mirror its namespace.
func (x *Indexer) Vault() Vault { return x.v }

// Listing is the set of files with a match and their ancestor directories, rebuilt at most
// once per EntryValid.
type Listing struct {
	at    time.Time
	gen   uint64
	files map[core.Ino]bool
	dirs  map[string]bool // slash paths from the root ("" = root)
}

// HasMatch reports whether file ino has a near-duplicate.
func (l *Listing) HasMatch(ino core.Ino) bool { return l.files[ino] }

// HasDir reports whether directory rel (slash path from the root, "" = root) holds, at any
// depth, a file with a near-duplicate.
func (l *Listing) HasDir(rel string) bool { return l.dirs[rel] }

// listingState is the cached Listing.
type listingState struct {
	snapMu sync.Mutex
	cur    *Listing
}

// Listing returns the current listing.
func (x *Indexer) Listing() *Listing {
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
	s := &Listing{at: time.Now(), gen: gen, files: map[core.Ino]bool{}, dirs: map[string]bool{"": true}}
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

// TreeDir returns the entries of directory dir (looked up as rel, its slash path from the
// root) that .similar/ shows: subdirectories holding a file with a match, and files with a
// match (each shown as a directory of its matches).
func (x *Indexer) TreeDir(dir core.Ino, rel string) ([]core.DirEntry, error) {
	ents, err := x.v.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	l := x.Listing()
	var out []core.DirEntry
	for _, e := range ents {
		if e.Mode.IsDir() && l.HasDir(path.Join(rel, e.Name)) || e.Mode.IsRegular() && l.HasMatch(e.Ino) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Link is one entry of a match directory: a symlink named Name to Target, relative to the
// match directory.
type Link struct {
	Name   string
	Target string
	Score  float32
}

// Links returns the entries of the match directory of file ino, looked up as rel (the
// file's slash path from the root: targets climb out of it), best match first.
func (x *Indexer) Links(ino core.Ino, rel string) []Link {
	ms, err := x.Query(ino, 0, 0)
	if err != nil {
		return nil
	}
	names := UniqueNames(ms)
	up := strings.Repeat("../", strings.Count(rel, "/")+2)
	out := make([]Link, len(ms))
	for i, m := range ms {
		out[i] = Link{Name: names[i], Target: up + m.Path, Score: m.Score}
	}
	return out
}

// LinksXattr is the match directory's XattrSimilarity: one "score<TAB>name" line per entry,
// in order. Linux refuses user.* xattrs on symlinks before asking the file system
// (fs/xattr.c, xattr_permission), so this is where programs read the scores.
func LinksXattr(ls []Link) []byte {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(FormatScore(l.Score) + "\t" + l.Name + "\n")
	}
	return []byte(b.String())
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

// FormatScore is how scores are printed (xattr, CLI).
func FormatScore(s float32) string { return fmt.Sprintf("%.4f", s) }
