package rootsync

import (
	"reflect"
	"sort"
	"strings"
	"testing"
)

// tr builds a tree from "ino:kind:content:mtime@parent/name[,parent/name]" specs.
func tr(specs ...string) *Tree {
	t := NewTree()
	for _, s := range specs {
		var ino, parent uint64
		var kind, content, links string
		var mtime int64
		head, rest, _ := strings.Cut(s, "@")
		parts := strings.Split(head, ":")
		ino = atou(parts[0])
		kind, content, mtime = parts[1], parts[2], int64(atou(parts[3]))
		links = rest
		k := File
		if kind == "d" {
			k = Dir
		}
		t.Nodes[ino] = Node{Kind: k, Content: content, Meta: "m", Mtime: mtime}
		if links == "" {
			continue
		}
		for _, l := range strings.Split(links, ",") {
			p, name, _ := strings.Cut(l, "/")
			parent = atou(p)
			t.Links[ino] = append(t.Links[ino], Link{Parent: parent, Name: name})
		}
	}
	return t
}

func atou(s string) uint64 {
	var v uint64
	for _, c := range s {
		v = v*10 + uint64(c-'0')
	}
	return v
}

// paths renders a result as sorted "path=side:from" lines.
func paths(t *testing.T, in Input, r *Result) []string {
	t.Helper()
	var out []string
	var name func(ino Ino, depth int) string
	name = func(ino Ino, depth int) string {
		if ino == RootIno {
			return ""
		}
		p := r.Picks[ino]
		if p == nil || len(p.Links) == 0 || depth > 100 {
			t.Fatalf("inode %d has no path (cycle or dangling)", ino)
		}
		return name(p.Links[0].Parent, depth+1) + "/" + p.Links[0].Name
	}
	for ino, p := range r.Picks {
		if ino == RootIno {
			continue
		}
		side := map[Side]string{Ours: "o", Theirs: "t", Base: "b"}[p.Side]
		var n Node
		switch p.Side {
		case Ours:
			n = in.Ours.Nodes[p.From]
		case Theirs:
			n = in.Theirs.Nodes[p.From]
		default:
			n = in.Base.Nodes[p.From]
		}
		out = append(out, name(ino, 0)+"="+side+":"+n.Content)
	}
	sort.Strings(out)
	return out
}

func run(t *testing.T, b, o, th *Tree, want ...string) {
	t.Helper()
	next := uint64(1000)
	in := Input{Base: b, Ours: o, Theirs: th, OurDevice: "laptop", TheirDevice: "desktop",
		Alloc: func() uint64 { next++; return next }}
	got := paths(t, in, Merge(in))
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("merge:\n got  %q\n want %q", got, want)
	}
}

const root = "1:d::0"

func TestMergeDifferentFilesBothKept(t *testing.T) {
	run(t, tr(root), tr(root, "2:f:a:5@1/a"), tr(root, "3:f:b:6@1/b"), "/a=o:a", "/b=t:b")
}

func TestMergeSameFileBothChanged(t *testing.T) {
	b := tr(root, "2:f:v0:1@1/p.jpg")
	// Theirs is later: it keeps the name, ours becomes the conflict copy.
	run(t, b, tr(root, "2:f:ours:5@1/p.jpg"), tr(root, "2:f:theirs:9@1/p.jpg"),
		"/p.jpg=t:theirs", "/p (conflict laptop 1970-01-01 00.00).jpg=o:ours")
	// Ours is later.
	run(t, b, tr(root, "2:f:ours:9@1/p.jpg"), tr(root, "2:f:theirs:5@1/p.jpg"),
		"/p.jpg=o:ours", "/p (conflict desktop 1970-01-01 00.00).jpg=t:theirs")
}

func TestMergeDeleteVsModifyKeepsModified(t *testing.T) {
	b := tr(root, "2:d::1@1/dir", "3:f:v0:1@2/f")
	run(t, b, tr(root), tr(root, "2:d::1@1/dir", "3:f:v1:2@2/f"), "/dir=t:", "/dir/f=t:v1")
	run(t, b, tr(root, "2:d::1@1/dir", "3:f:v1:2@2/f"), tr(root), "/dir=o:", "/dir/f=o:v1")
	// Unchanged on one side, deleted on the other: deleted.
	run(t, b, tr(root), b)
}

func TestMergeNewFileInDeletedDir(t *testing.T) {
	b := tr(root, "2:d::1@1/dir")
	run(t, b, tr(root, "2:d::1@1/dir", "5:f:n:3@2/new"), tr(root), "/dir=o:", "/dir/new=o:n")
}

func TestMergeTwoRenamesKeepOneName(t *testing.T) {
	b := tr(root, "2:f:x:1@1/a")
	run(t, b, tr(root, "2:f:x:1@1/b"), tr(root, "2:f:x:1@1/c"), "/c=t:x")
}

func TestMergeDirectoryMovesNoCycle(t *testing.T) {
	b := tr(root, "2:d::1@1/A", "3:d::1@1/B")
	// Ours moves A into B, theirs moves B into A.
	run(t, b, tr(root, "2:d::1@3/A", "3:d::1@1/B"), tr(root, "2:d::1@1/A", "3:d::1@2/B"), "/A=t:", "/A/B=t:")
}

func TestMergeSameNewDirectoryIsOne(t *testing.T) {
	run(t, tr(root), tr(root, "2:d::1@1/2026", "3:f:o:1@2/x"), tr(root, "4:d::1@1/2026", "5:f:t:1@4/y"),
		"/2026=t:", "/2026/x=o:o", "/2026/y=t:t")
}

func TestMergeInodeCollisionRenumbersTheirs(t *testing.T) {
	run(t, tr(root), tr(root, "2:f:o:1@1/a"), tr(root, "2:f:t:1@1/b"), "/a=o:o", "/b=t:t")
}

func TestMergePinnedFileSurvivesDelete(t *testing.T) {
	b := tr(root, "2:f:x:1@1/open")
	in := Input{Base: b, Ours: b, Theirs: tr(root), Pinned: map[Ino]bool{2: true}, Alloc: func() uint64 { return 99 }}
	if got := paths(t, in, Merge(in)); !reflect.DeepEqual(got, []string{"/open=o:x"}) {
		t.Fatalf("%q", got)
	}
}

func TestConflictName(t *testing.T) {
	const ts = 1796567520 * int64(1e9) // 2026-12-06 14.32 UTC
	for _, c := range []struct{ name, dev, want string }{
		{"photo.jpg", "laptop", "photo (conflict laptop 2026-12-06 14.32).jpg"},
		{"README", "a/b", "README (conflict a_b 2026-12-06 14.32)"},
		{".hidden", "", ".hidden (conflict unknown 2026-12-06 14.32)"},
	} {
		if got := ConflictName(c.name, c.dev, ts, 1); got != c.want {
			t.Errorf("ConflictName(%q) = %q, want %q", c.name, got, c.want)
		}
	}
	if got := ConflictName("x.jpg", "d", ts, 2); got != "x (conflict d 2026-12-06 14.32 2).jpg" {
		t.Error(got)
	}
	if got := ConflictName(strings.Repeat("é", 127)+".jpg", "d", ts, 1); len(got) > 255 || !strings.HasSuffix(got, ").jpg") {
		t.Errorf("long name: %d bytes", len(got))
	}
}
