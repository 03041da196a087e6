// Package rootsync is the multi-device root protocol of imgfs without FUSE and without the
// working copy's storage: commit, fetch, adoption, the open-time chain check and the refresh
// poll against a backend.Store (protocol.go, Syncer, with the working copy behind Local),
// presence records and gc's retention rule (presence.go), the 3-way merge of namespaces and
// the naming rule of conflict copies (this file), and the link check of a chain of roots
// (chain.go). fs/core implements Local and converts its trees to and from the model here.
// The contract is in docs/core.md ("Several devices").
package rootsync

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// Ino is an inode number. RootIno is the root directory; it always exists.
type Ino = uint64

const RootIno Ino = 1

// Kind of an inode.
type Kind uint8

const (
	File Kind = iota
	Dir
	Symlink
)

// Node is what the merge needs of an inode. Content and Meta are opaque comparable values
// (fs/core encodes them): Content identifies a regular file's bytes (a content reference or
// a local spool), Meta the other attributes. Nlink, parent and name are not part of Meta:
// the merge computes the links.
type Node struct {
	Kind    Kind
	Content string
	Meta    string
	Mtime   int64 // Unix nanoseconds: decides which of two versions is "later"
}

// Link is one directory entry: the name Name in directory Parent.
type Link struct {
	Parent Ino
	Name   string
}

// Tree is one version of a namespace.
type Tree struct {
	Nodes map[Ino]Node
	Links map[Ino][]Link // every entry naming the inode (several for hard links)
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{Nodes: map[Ino]Node{}, Links: map[Ino][]Link{}} }

// Side says which input a merged inode's record comes from.
type Side uint8

const (
	Ours Side = iota
	Theirs
	Base // a directory resurrected from the base (deleted on both sides, still needed)
)

// Pick is one inode of the merge result: the record of inode From on side Side, under the
// links Links. For a conflict copy Ino differs from From.
type Pick struct {
	Side  Side
	From  Ino
	Links []Link
}

// Result of Merge: the merged namespace.
type Result struct {
	Picks map[Ino]*Pick
	// Conflicts lists what was kept twice or moved aside, for the log (no file names of
	// the user here go to the store; fs/core logs them locally).
	Conflicts []string
}

// Input of Merge.
type Input struct {
	Base, Ours, Theirs *Tree
	// Pinned inodes count as changed by ours (files open on this device): never deleted.
	Pinned map[Ino]bool
	// Alloc returns a fresh inode number for a conflict copy (from this device's range).
	Alloc func() Ino
	// OurDevice and TheirDevice name the devices in conflict copy names.
	OurDevice, TheirDevice string
}

// Merge is the 3-way merge of Ours and Theirs against their common Base. The rules
// (docs/core.md, "Several devices"):
//   - a change on one side only is taken; a node changed on both sides keeps the later
//     version (Mtime) and, when both changed a file's content, the other content as a
//     conflict copy beside it;
//   - delete against change keeps the changed node (and the directories above it);
//   - links (names) merge as sets: a name added on either side is added, a name is removed
//     when either side removed it and the other did not add it back; a directory, or a file
//     that had one name on both sides, ends with exactly one name (theirs when both renamed);
//   - a directory move that would make a cycle is undone (the directory stays where theirs
//     has it, or goes to the root);
//   - two different inodes under one name: two directories become one (the entries of ours
//     move into theirs); otherwise the later keeps the name and the others get conflict names
//     (ConflictName).
//
// Ours keeps its inode numbers (open files and the journal refer to them); a conflict copy of
// theirs gets a fresh number from Alloc. Nothing that either side has is dropped unless the
// other side deleted it without changing it.
func Merge(in Input) *Result {
	m := &merger{in: in, res: &Result{Picks: map[Ino]*Pick{}}}
	m.nodes()
	m.links()
	m.parents()
	m.cycles()
	m.names()
	return m.res
}

type merger struct {
	in  Input
	res *Result
	// theirsAt maps an inode of theirs renumbered because ours uses its number for another
	// inode (both created it since base) to its new number.
	theirsAt map[Ino]Ino
}

func (m *merger) node(s Side, ino Ino) (Node, bool) {
	var t *Tree
	switch s {
	case Ours:
		t = m.in.Ours
	case Theirs:
		t = m.in.Theirs
	default:
		t = m.in.Base
	}
	n, ok := t.Nodes[ino]
	return n, ok
}

func (m *merger) pickNode(p *Pick) Node {
	n, _ := m.node(p.Side, p.From)
	return n
}

func sortedInos(ts ...*Tree) []Ino {
	seen := map[Ino]bool{}
	var out []Ino
	for _, t := range ts {
		for ino := range t.Nodes {
			if !seen[ino] {
				seen[ino] = true
				out = append(out, ino)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// nodes decides, per inode, which record survives.
func (m *merger) nodes() {
	B, O, T := m.in.Base, m.in.Ours, m.in.Theirs
	for _, ino := range sortedInos(B, O, T) {
		b, inB := B.Nodes[ino]
		o, inO := O.Nodes[ino]
		t, inT := T.Nodes[ino]
		pinned := m.in.Pinned[ino]
		oCh := inO && (!inB || o != b || pinned)
		tCh := inT && (!inB || t != b)
		oContent := inO && (!inB || o.Content != b.Content || o.Kind != b.Kind || pinned)
		tContent := inT && (!inB || t.Content != b.Content || t.Kind != b.Kind)
		switch {
		case inO && inT && !inB && o != t:
			// Both created this number for different inodes: theirs moves to a new number.
			m.res.Picks[ino] = &Pick{Side: Ours, From: ino}
			n := m.in.Alloc()
			if m.theirsAt == nil {
				m.theirsAt = map[Ino]Ino{}
			}
			m.theirsAt[ino] = n
			m.res.Picks[n] = &Pick{Side: Theirs, From: ino}
		case inO && inT:
			switch {
			case o.Kind == File && t.Kind == File && oContent && tContent && o.Content != t.Content:
				m.res.Picks[ino] = &Pick{Side: Ours, From: ino}
				m.res.Picks[m.in.Alloc()] = &Pick{Side: Theirs, From: ino}
				m.res.Conflicts = append(m.res.Conflicts, fmt.Sprintf("inode %d changed on both devices: both versions kept", ino))
			case oCh && !tCh:
				m.res.Picks[ino] = &Pick{Side: Ours, From: ino}
			case tCh && !oCh:
				m.res.Picks[ino] = &Pick{Side: Theirs, From: ino}
			case oContent && !tContent:
				m.res.Picks[ino] = &Pick{Side: Ours, From: ino}
			case tContent && !oContent:
				m.res.Picks[ino] = &Pick{Side: Theirs, From: ino}
			case o.Mtime > t.Mtime:
				m.res.Picks[ino] = &Pick{Side: Ours, From: ino}
			default:
				m.res.Picks[ino] = &Pick{Side: Theirs, From: ino}
			}
		case inO && (!inB || oContent || o.Kind != File && oCh):
			// New on ours, or theirs deleted what ours changed.
			m.res.Picks[ino] = &Pick{Side: Ours, From: ino}
		case inT && (!inB || tContent || t.Kind != File && tCh):
			m.res.Picks[ino] = &Pick{Side: Theirs, From: ino}
		}
	}
	if _, ok := m.res.Picks[RootIno]; !ok {
		side := Theirs
		if _, ok := T.Nodes[RootIno]; !ok {
			side = Ours
		}
		m.res.Picks[RootIno] = &Pick{Side: side, From: RootIno}
	}
}

func linkSet(ls []Link) map[Link]bool {
	s := make(map[Link]bool, len(ls))
	for _, l := range ls {
		s[l] = true
	}
	return s
}

func sortLinks(ls []Link) {
	sort.Slice(ls, func(i, j int) bool {
		if ls[i].Parent != ls[j].Parent {
			return ls[i].Parent < ls[j].Parent
		}
		return ls[i].Name < ls[j].Name
	})
}

// theirLinks are theirs' links of inode ino with parents renumbered like theirs' inodes.
func (m *merger) theirLinks(ino Ino) []Link {
	ls := append([]Link(nil), m.in.Theirs.Links[ino]...)
	for i := range ls {
		if n, ok := m.theirsAt[ls[i].Parent]; ok {
			ls[i].Parent = n
		}
	}
	return ls
}

// links merges the names of every surviving inode.
func (m *merger) links() {
	for _, ino := range m.sortedPicks() {
		p := m.res.Picks[ino]
		if p.From != ino || m.theirsAt[ino] != 0 && p.Side == Theirs {
			continue // copies and renumbered inodes: below
		}
		if _, moved := m.theirsAt[ino]; moved {
			p.Links = append([]Link(nil), m.in.Ours.Links[ino]...)
			continue
		}
		bl := linkSet(m.in.Base.Links[ino])
		ol := m.in.Ours.Links[ino]
		tl := m.theirLinks(ino)
		os, ts := linkSet(ol), linkSet(tl)
		var out []Link
		add := map[Link]bool{}
		for _, l := range append(append([]Link(nil), ol...), tl...) {
			if add[l] {
				continue
			}
			if os[l] && ts[l] || os[l] && !bl[l] || ts[l] && !bl[l] {
				add[l] = true
				out = append(out, l)
			}
		}
		n := m.pickNode(p)
		single := n.Kind == Dir || len(ol) <= 1 && len(tl) <= 1
		if single && len(out) > 1 {
			// Renamed on both sides (or a directory linked twice): one name, theirs first.
			keep := out[0]
			for _, l := range out {
				if ts[l] && !bl[l] {
					keep = l
					break
				}
			}
			out = []Link{keep}
		}
		if len(out) == 0 && ino != RootIno {
			// Deleted on one side, changed on the other: the changed side's names.
			switch {
			case p.Side == Ours && len(ol) > 0:
				out = ol
			case len(tl) > 0:
				out = tl
			case len(ol) > 0:
				out = ol
			default:
				// An open file that was unlinked on ours (kept open, no names) stays so.
				out = nil
			}
		}
		sortLinks(out)
		p.Links = out
	}
	for _, ino := range m.sortedPicks() {
		p := m.res.Picks[ino]
		if p.Side == Theirs && p.From != ino {
			p.Links = m.theirLinks(p.From)
			if len(p.Links) == 0 {
				p.Links = []Link{{Parent: RootIno, Name: fmt.Sprintf("inode %d", p.From)}}
			}
		}
	}
}

func (m *merger) sortedPicks() []Ino {
	out := make([]Ino, 0, len(m.res.Picks))
	for ino := range m.res.Picks {
		out = append(out, ino)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// parents makes every link point at a surviving directory: a directory deleted on one side
// (or both) that still holds a surviving inode is brought back, with its own names.
func (m *merger) parents() {
	for changed := true; changed; {
		changed = false
		for _, ino := range m.sortedPicks() {
			p := m.res.Picks[ino]
			for i, l := range p.Links {
				if q, ok := m.res.Picks[l.Parent]; ok {
					if m.pickNode(q).Kind == Dir {
						continue
					}
					p.Links[i].Parent = RootIno // the parent is not a directory any more
					changed = true
					continue
				}
				if m.revive(l.Parent) {
					changed = true
					continue
				}
				p.Links[i].Parent = RootIno
				changed = true
			}
		}
	}
}

// revive brings back directory ino from the newest side that has it.
func (m *merger) revive(ino Ino) bool {
	for _, s := range []Side{Ours, Theirs, Base} {
		n, ok := m.node(s, ino)
		if !ok || n.Kind != Dir {
			continue
		}
		var ls []Link
		switch s {
		case Ours:
			ls = m.in.Ours.Links[ino]
		case Theirs:
			ls = m.theirLinks(ino)
		default:
			ls = m.in.Base.Links[ino]
		}
		ls = append([]Link(nil), ls...)
		if len(ls) == 0 {
			ls = []Link{{Parent: RootIno, Name: fmt.Sprintf("inode %d", ino)}}
		}
		m.res.Picks[ino] = &Pick{Side: s, From: ino, Links: ls[:1]}
		m.res.Conflicts = append(m.res.Conflicts, fmt.Sprintf("directory %d deleted on one device kept: it holds changed entries", ino))
		return true
	}
	return false
}

// cycles undoes directory moves that make a directory its own ancestor.
func (m *merger) cycles() {
	for _, ino := range m.sortedPicks() {
		p := m.res.Picks[ino]
		if ino == RootIno || m.pickNode(p).Kind != Dir || len(p.Links) == 0 {
			continue
		}
		if !m.inCycle(ino) {
			continue
		}
		// Try theirs' place, then the base's, then the root.
		var tries []Link
		tries = append(tries, m.theirLinks(ino)...)
		tries = append(tries, m.in.Base.Links[ino]...)
		tries = append(tries, Link{Parent: RootIno, Name: p.Links[0].Name})
		for _, l := range tries {
			if q, ok := m.res.Picks[l.Parent]; !ok || m.pickNode(q).Kind != Dir {
				continue
			}
			p.Links = []Link{l}
			if !m.inCycle(ino) {
				break
			}
		}
		m.res.Conflicts = append(m.res.Conflicts, fmt.Sprintf("directory %d: a move on one device would make a cycle; undone", ino))
	}
}

func (m *merger) inCycle(ino Ino) bool {
	seen := map[Ino]bool{}
	for cur := ino; cur != RootIno; {
		if seen[cur] {
			return true
		}
		seen[cur] = true
		p := m.res.Picks[cur]
		if p == nil || len(p.Links) == 0 {
			return false
		}
		cur = p.Links[0].Parent
	}
	return false
}

// names resolves two or more inodes under one name.
func (m *merger) names() {
	for changed := true; changed; {
		changed = false
		byName := map[Link][]Ino{}
		for _, ino := range m.sortedPicks() {
			for _, l := range m.res.Picks[ino].Links {
				byName[l] = append(byName[l], ino)
			}
		}
		keys := make([]Link, 0, len(byName))
		for l, inos := range byName {
			if len(inos) > 1 {
				keys = append(keys, l)
			}
		}
		sortLinks(keys)
		taken := func(l Link) bool { return len(byName[l]) > 0 }
		for _, l := range keys {
			inos := byName[l]
			if len(inos) < 2 {
				continue
			}
			changed = true
			m.clash(l, inos, taken, byName)
		}
	}
}

func (m *merger) clash(l Link, inos []Ino, taken func(Link) bool, byName map[Link][]Ino) {
	// Two directories: one directory. Keep theirs' (already visible elsewhere).
	var dirs []Ino
	for _, ino := range inos {
		if m.pickNode(m.res.Picks[ino]).Kind == Dir {
			dirs = append(dirs, ino)
		}
	}
	if len(dirs) > 1 {
		keep := dirs[0]
		for _, d := range dirs {
			if m.res.Picks[d].Side == Theirs {
				keep = d
				break
			}
		}
		for _, d := range dirs {
			if d == keep {
				continue
			}
			for _, ino := range m.sortedPicks() {
				p := m.res.Picks[ino]
				for i := range p.Links {
					if p.Links[i].Parent == d {
						p.Links[i].Parent = keep
					}
				}
			}
			delete(m.res.Picks, d)
			m.res.Conflicts = append(m.res.Conflicts, fmt.Sprintf("directories %d and %d created under one name: merged", keep, d))
		}
		return
	}
	// The later version keeps the name; a directory always keeps it over a file.
	winner := inos[0]
	better := func(a, b Ino) bool {
		na, nb := m.pickNode(m.res.Picks[a]), m.pickNode(m.res.Picks[b])
		if (na.Kind == Dir) != (nb.Kind == Dir) {
			return na.Kind == Dir
		}
		if na.Mtime != nb.Mtime {
			return na.Mtime > nb.Mtime
		}
		return m.res.Picks[a].Side == Theirs && m.res.Picks[b].Side != Theirs
	}
	for _, ino := range inos[1:] {
		if better(ino, winner) {
			winner = ino
		}
	}
	for _, ino := range inos {
		if ino == winner {
			continue
		}
		p := m.res.Picks[ino]
		dev := m.in.TheirDevice
		if p.Side == Ours {
			dev = m.in.OurDevice
		}
		n := m.pickNode(p)
		for i, pl := range p.Links {
			if pl != l {
				continue
			}
			for k := 1; ; k++ {
				nl := Link{Parent: l.Parent, Name: ConflictName(l.Name, dev, n.Mtime, k)}
				if !taken(nl) {
					p.Links[i] = nl
					byName[nl] = append(byName[nl], ino)
					break
				}
			}
		}
		m.res.Conflicts = append(m.res.Conflicts, fmt.Sprintf("inode %d renamed as a conflict copy", ino))
	}
	byName[l] = []Ino{winner}
}

// ConflictName is the documented name of a conflict copy: the name's stem, then
// " (conflict DEVICE YYYY-MM-DD HH.MM)" in UTC of the version's mtime, then the extension:
// "photo.jpg" -> "photo (conflict laptop 2026-12-06 14.32).jpg". n > 1 appends " n" inside
// the parentheses when that name is taken. Names stay within 255 bytes (the stem is cut).
func ConflictName(name, device string, mtime int64, n int) string {
	ext := path.Ext(name)
	if ext == name || len(ext) > 16 || strings.ContainsAny(ext, " ") {
		ext = ""
	}
	stem := strings.TrimSuffix(name, ext)
	device = strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '(' || r == ')' {
			return '_'
		}
		return r
	}, device)
	if len(device) > 64 {
		device = device[:64]
	}
	if device == "" {
		device = "unknown"
	}
	tag := fmt.Sprintf(" (conflict %s %s", device, time.Unix(0, mtime).UTC().Format("2006-01-02 15.04"))
	if n > 1 {
		tag += fmt.Sprintf(" %d", n)
	}
	tag += ")"
	if over := len(stem) + len(tag) + len(ext) - 255; over > 0 {
		stem = cutUTF8(stem, len(stem)-over)
	}
	return stem + tag + ext
}

func cutUTF8(s string, n int) string {
	if n <= 0 {
		return ""
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
