package core

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/fs/core/rootsync"
)

func sampleTree() *tree {
	var loc dedup.Locator
	loc[0] = 7
	return &tree{NextIno: 9, Inodes: []treeInode{
		{Ino: 1, Node: inode{Mode: os.ModeDir | 0o755, Nlink: 3, Mtime: 5}},
		{Ino: 2, Node: inode{Mode: 0o644, Nlink: 1, Size: 10, Parent: 1, Name: "a.jpg", HasRef: true,
			Ref: dedup.NewContent(dedup.Ref{Locator: loc, Key: bytes.Repeat([]byte{1}, 32), Size: 10})},
			Xattrs: []xattr{{Name: "user.x", Value: []byte("v")}}},
		{Ino: 4, Node: inode{Mode: 0o644, Nlink: 1, Size: 3 << 20, Parent: 1, Name: "v2", HasRef: true,
			Ref: dedup.NewContent(dedup.Ref{Locator: loc, Key: bytes.Repeat([]byte{1}, 32), Size: 2 << 20},
				dedup.Ref{Locator: loc, Key: bytes.Repeat([]byte{2}, 32), Size: 1 << 20})}},
		{Ino: 3, Node: inode{Mode: os.ModeSymlink | 0o777, Nlink: 1, Size: 5, Parent: 1, Name: "l", Target: "a.jpg"}},
	}, Dirents: []treeDirent{{1, "a.jpg", 2}, {1, "l", 3}}}
}

// piecesTree is sampleTree with a file whose list holds pieces (docs/format.md §11.4).
func piecesTree() *tree {
	t := sampleTree()
	n := t.Inodes[2].Node
	var loc dedup.Locator
	loc[0] = 9
	patch := dedup.Ref{Locator: loc, Key: bytes.Repeat([]byte{3}, 32), Size: 4096}
	n.Ref = n.Ref.Range(0, 100).AppendPiece(patch, 0, 4096).AppendContent(n.Ref.Range(4196, n.Ref.Size()))
	t.Inodes[2].Node = n
	return t
}

func FuzzDecodeTree(f *testing.F) {
	f.Add(encodeTree(sampleTree()))
	f.Add(encodeTree(piecesTree()))
	f.Add(encodeTree(&tree{}))
	f.Add([]byte(treeMagic + "\x00\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := decodeTree(b)
		if err != nil {
			return
		}
		_ = checkTree(tr)
		again, err := decodeTree(encodeTree(tr))
		if err != nil || !reflect.DeepEqual(normTree(again), normTree(tr)) {
			t.Fatalf("re-encoding changed the tree: %v", err)
		}
	})
}

// normTree makes nil and empty slices compare equal.
func normTree(t *tree) *tree {
	c := *t
	c.Inodes = append([]treeInode{}, t.Inodes...)
	for i := range c.Inodes {
		if len(c.Inodes[i].Xattrs) == 0 {
			c.Inodes[i].Xattrs = nil
		}
		for j := range c.Inodes[i].Xattrs {
			if len(c.Inodes[i].Xattrs[j].Value) == 0 {
				c.Inodes[i].Xattrs[j].Value = nil
			}
		}
	}
	if len(c.Dirents) == 0 {
		c.Dirents = nil
	}
	if len(c.Inodes) == 0 {
		c.Inodes = nil
	}
	return &c
}

func FuzzDecodeJournal(f *testing.F) {
	f.Add(encodePending(pendingRec{Ino: 5, Size: 123456}))
	f.Add(encodePending(pendingRec{Ino: 5, Size: 123456, Base: sampleTree().Inodes[2].Node.Ref, BaseLen: 3 << 20}))
	f.Add(encodePending(pendingRec{}))
	f.Add(encodePending(pendingRec{Ino: 5, Size: 3 << 20, Base: piecesTree().Inodes[2].Node.Ref, BaseLen: 3 << 20}))
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePending(b)
		if err != nil {
			return
		}
		if q, err := decodePending(encodePending(p)); err != nil || q != p {
			t.Fatal("journal record does not round-trip")
		}
	})
}

func FuzzDecodeInode(f *testing.F) {
	for _, ti := range append(sampleTree().Inodes, piecesTree().Inodes[2]) {
		n := ti.Node
		n.Spool = 42
		f.Add(encodeInodeRecord(&n))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeInodeRecord(b)
		if err != nil {
			return
		}
		m, err := decodeInodeRecord(encodeInodeRecord(&n))
		if err != nil || !reflect.DeepEqual(normInode(m), normInode(n)) {
			t.Fatal("inode record does not round-trip")
		}
	})
}

func normInode(n inode) inode { return n }

func FuzzDecodeRootAuxLease(f *testing.F) {
	var l dedup.Locator
	l[3] = 1
	f.Add(encodeRoot(&rootRec{Seq: 3, Prev: l, Time: 7, Shards: []shardRef{{0, l}, {5, l}}, Aux: []auxRef{{"emb", l}}}))
	f.Add(encodeAux(&auxTable{Table: "emb", Entries: [][2][]byte{{[]byte("k"), []byte("v")}}}))
	f.Add(rootsync.EncodePresence(Presence{ID: make([]byte, 16), Device: "h", Pid: 9, Time: 1, Anchor: 3, Unsynced: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeRoot(b); err == nil {
			if r2, err := decodeRoot(encodeRoot(r)); err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatal("root does not round-trip")
			}
		}
		if a, err := decodeAux(b); err == nil {
			if _, err := decodeAux(encodeAux(a)); err != nil {
				t.Fatal("aux does not round-trip")
			}
		}
		if l, err := rootsync.DecodePresence(b); err == nil {
			if _, err := rootsync.DecodePresence(rootsync.EncodePresence(l)); err != nil {
				t.Fatal("presence does not round-trip")
			}
		}
		decodeDirent(b)
		decodeKV(b, maxAuxKey, maxAuxValue)
	})
}

// FuzzSpoolBlocks checks the spool's read-modify-write arithmetic against a plain buffer.
func FuzzSpoolOps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 200, 17, 9, 255, 4})
	f.Fuzz(func(t *testing.T, ops []byte) {
		dir := t.TempDir()
		sp, err := createSpool(dir+"/s", bytes.Repeat([]byte{3}, 32))
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		var model []byte
		for i := 0; i+2 < len(ops) && i < 60; i += 3 {
			off := int64(ops[i+1]) * 997
			n := int(ops[i+2]) * 613
			switch ops[i] % 3 {
			case 0, 1:
				p := bytes.Repeat([]byte{ops[i] | 1}, n)
				if err := sp.writeAt(p, off); err != nil {
					t.Fatal(err)
				}
				if end := int(off) + n; end > len(model) {
					model = append(model, make([]byte, end-len(model))...)
				}
				copy(model[off:], p)
			case 2:
				size := min(int64(len(model)), off)
				if err := sp.truncate(size, int64(len(model))); err != nil {
					t.Fatal(err)
				}
				model = model[:size]
			}
			got := make([]byte, len(model))
			if _, err := sp.readAt(got, 0, int64(len(model))); err != nil && len(model) > 0 {
				t.Fatal(err)
			}
			if !bytes.Equal(got, model) {
				t.Fatalf("spool differs from the model after op %d", i/3)
			}
		}
	})
}

// Minimal inode entries (15 bytes each) must decode: the hostile-count bound is exact.
func TestDecodeTreeMinimalEntries(t *testing.T) {
	tr := &tree{}
	for i := 0; i < 50; i++ {
		tr.Inodes = append(tr.Inodes, treeInode{Ino: Ino(i + 1)})
	}
	got, err := decodeTree(encodeTree(tr))
	if err != nil || len(got.Inodes) != 50 {
		t.Fatalf("minimal tree: %v", err)
	}
}
