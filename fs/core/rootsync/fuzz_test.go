package rootsync

import (
	"fmt"
	"testing"
)

// genTree builds a valid tree from bytes: each 3-byte step adds a directory or a file under
// an existing directory (names from a small alphabet, so names collide across trees).
func genTree(b []byte, inoBase uint64) *Tree {
	t := NewTree()
	t.Nodes[RootIno] = Node{Kind: Dir}
	dirs := []Ino{RootIno}
	used := map[Link]bool{}
	next := inoBase
	for i := 0; i+2 < len(b); i += 3 {
		parent := dirs[int(b[i])%len(dirs)]
		l := Link{Parent: parent, Name: fmt.Sprintf("n%d", b[i+1]%6)}
		if used[l] {
			continue
		}
		used[l] = true
		next++
		if b[i+2]%3 == 0 {
			t.Nodes[next] = Node{Kind: Dir, Meta: "m"}
			dirs = append(dirs, next)
		} else {
			t.Nodes[next] = Node{Kind: File, Content: fmt.Sprintf("c%d", b[i+2]%5), Meta: "m", Mtime: int64(b[i+2])}
		}
		t.Links[next] = []Link{l}
	}
	return t
}

// mutate derives a side from base: deletes, content changes, renames/moves, new nodes.
func mutate(base *Tree, b []byte, inoBase uint64) *Tree {
	t := NewTree()
	for ino, n := range base.Nodes {
		t.Nodes[ino] = n
		t.Links[ino] = append([]Link(nil), base.Links[ino]...)
	}
	var inos []Ino
	for ino := range base.Nodes {
		if ino != RootIno {
			inos = append(inos, ino)
		}
	}
	sortInos(inos)
	next := inoBase
	for i := 0; i+2 < len(b) && len(inos) > 0; i += 3 {
		ino := inos[int(b[i])%len(inos)]
		if _, ok := t.Nodes[ino]; !ok {
			continue
		}
		switch b[i+1] % 4 {
		case 0: // delete (a file, or a directory with nothing in it)
			empty := true
			for _, ls := range t.Links {
				for _, l := range ls {
					empty = empty && l.Parent != ino
				}
			}
			if t.Nodes[ino].Kind == File || empty {
				delete(t.Nodes, ino)
				delete(t.Links, ino)
			}
		case 1: // change content
			n := t.Nodes[ino]
			if n.Kind == File {
				n.Content = fmt.Sprintf("x%d", b[i+2])
				n.Mtime = int64(b[i+2]) + 1000
				t.Nodes[ino] = n
			}
		case 2: // rename or move (possibly making a cycle on merge, never within one side)
			dst := inos[int(b[i+2])%len(inos)]
			if d, ok := t.Nodes[dst]; ok && d.Kind == Dir && !ancestor(t, ino, dst) {
				t.Links[ino] = []Link{{Parent: dst, Name: fmt.Sprintf("n%d", b[i+2]%6)}}
			} else {
				t.Links[ino] = []Link{{Parent: RootIno, Name: fmt.Sprintf("r%d", b[i+2]%6)}}
			}
		case 3: // a new file next to ino
			next++
			p := t.Links[ino][0].Parent
			t.Nodes[next] = Node{Kind: File, Content: fmt.Sprintf("new%d", b[i+2]), Meta: "m", Mtime: int64(b[i+2])}
			t.Links[next] = []Link{{Parent: p, Name: fmt.Sprintf("n%d", b[i+2]%6)}}
		}
	}
	// Keep the side valid: one inode per name (later ones renamed uniquely).
	seen := map[Link]bool{}
	for _, ino := range sortedKeys(t) {
		for i, l := range t.Links[ino] {
			for seen[l] {
				l.Name += "_"
			}
			seen[l] = true
			t.Links[ino][i] = l
		}
	}
	return t
}

func ancestor(t *Tree, a, d Ino) bool { // is a an ancestor of (or equal to) d?
	for cur, n := d, 0; n < 100; n++ {
		if cur == a {
			return true
		}
		if cur == RootIno || len(t.Links[cur]) == 0 {
			return false
		}
		cur = t.Links[cur][0].Parent
	}
	return true
}

func sortInos(x []Ino) {
	for i := 1; i < len(x); i++ {
		for j := i; j > 0 && x[j] < x[j-1]; j-- {
			x[j], x[j-1] = x[j-1], x[j]
		}
	}
}

func sortedKeys(t *Tree) []Ino {
	var out []Ino
	for ino := range t.Nodes {
		out = append(out, ino)
	}
	sortInos(out)
	return out
}

// FuzzMerge checks the merge's invariants on random trees: one inode per name, every name in
// a surviving directory, no directory cycles, every file content of ours or theirs that
// changed since base survives somewhere.
func FuzzMerge(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 2, 1, 1, 3, 3}, []byte{0, 1, 5, 1, 2, 0}, []byte{0, 2, 1, 1, 1, 9})
	f.Add([]byte{0, 0, 0, 1, 1, 0, 2, 2, 1}, []byte{1, 2, 2, 2, 0, 0}, []byte{2, 2, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, bb, ob, tb []byte) {
		if len(bb) > 300 || len(ob) > 300 || len(tb) > 300 {
			return
		}
		base := genTree(bb, 100)
		ours := mutate(base, ob, 1000)
		tBase := uint64(2000)
		if len(tb) > 0 && tb[0]%2 == 1 {
			tBase = 1000 // both sides create the same inode numbers (a slot collision)
		}
		theirs := mutate(base, tb, tBase)
		next := uint64(5000)
		in := Input{Base: base, Ours: ours, Theirs: theirs, OurDevice: "o", TheirDevice: "t",
			Alloc: func() uint64 { next++; return next }}
		res := Merge(in)
		names := map[Link]Ino{}
		contents := map[string]bool{}
		for ino, p := range res.Picks {
			var n Node
			var ok bool
			switch p.Side {
			case Ours:
				n, ok = ours.Nodes[p.From]
			case Theirs:
				n, ok = theirs.Nodes[p.From]
			default:
				n, ok = base.Nodes[p.From]
			}
			if !ok {
				t.Fatalf("pick %d names a missing inode %+v", ino, p)
			}
			contents[n.Content] = true
			if ino != RootIno && len(p.Links) == 0 {
				t.Fatalf("inode %d has no name", ino)
			}
			if n.Kind == Dir && len(p.Links) > 1 {
				t.Fatalf("directory %d has %d names", ino, len(p.Links))
			}
			for _, l := range p.Links {
				if other, dup := names[l]; dup {
					t.Fatalf("inodes %d and %d under one name %+v", other, ino, l)
				}
				names[l] = ino
				q := res.Picks[l.Parent]
				if q == nil {
					t.Fatalf("inode %d in a directory %d that is gone", ino, l.Parent)
				}
			}
			for cur, steps := ino, 0; cur != RootIno; steps++ {
				if steps > len(res.Picks) {
					t.Fatalf("directory cycle through %d", ino)
				}
				cur = res.Picks[cur].Links[0].Parent
			}
		}
		for _, side := range []*Tree{ours, theirs} {
			for ino, n := range side.Nodes {
				if b, inB := base.Nodes[ino]; n.Kind == File && (!inB || b.Content != n.Content) && !contents[n.Content] {
					t.Fatalf("changed content %q of inode %d lost", n.Content, ino)
				}
			}
		}
	})
}
