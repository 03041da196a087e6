package core

import (
	"errors"

	"github.com/imgfs/imgfs/dedup"
)

// Plaintexts of the stored metadata (each sealed with dedup.SealMeta / SealRoot, so the
// store sees only Padmé-sized ciphertext). All integers are varints (codec.go).
//
//	tree (kind "tree"): "IMGFSTR1" nextIno
//	        nInodes  { ino inode(version, mode, uid, gid, nlink, size, atime, mtime, ctime,
//	                         parent, name, target, hasRef [loc(32) key(32) refSize])
//	                   nXattrs { name value } }
//	        nDirents { parent name ino }
//	aux  (kind "aux"):  "IMGFSAX1" table nEntries { key value }
//	root (SealRoot):    "IMGFSRT3" seq prevHash(32) unixNanos nShards { shard treeLoc(32) }
//	                               nAux { table loc(32) } device
//	                    ("IMGFSRT2" roots, without device, are still read)
//
// The namespace is sharded by inode number (shard = ino / shardSize): a tree object holds
// the inodes of one shard, their xattrs, and the directory entries that point at them (so
// whether a file is in a root is decided inside its own shard). A commit rewrites only the
// shards that changed.

const (
	treeMagic = "IMGFSTR1"
	auxMagic  = "IMGFSAX1"
	rootMagic = "IMGFSRT3"
	// rootMagicV2: roots written before they named their device.
	rootMagicV2 = "IMGFSRT2"
)

const shardSize = 1024

type xattr struct {
	Name  string
	Value []byte
}

type treeInode struct {
	Ino    Ino
	Node   inode
	Xattrs []xattr
}

type treeDirent struct {
	Parent Ino
	Name   string
	Ino    Ino
}

type tree struct {
	NextIno uint64
	Inodes  []treeInode
	Dirents []treeDirent
}

func encodeTree(t *tree) []byte {
	var e encoder
	e.fixed([]byte(treeMagic))
	e.u(t.NextIno)
	e.u(uint64(len(t.Inodes)))
	for i := range t.Inodes {
		ti := &t.Inodes[i]
		e.u(uint64(ti.Ino))
		ti.Node.encode(&e, false)
		e.u(uint64(len(ti.Xattrs)))
		for _, x := range ti.Xattrs {
			e.str(x.Name)
			e.bytes(x.Value)
		}
	}
	e.u(uint64(len(t.Dirents)))
	for _, d := range t.Dirents {
		e.u(uint64(d.Parent))
		e.str(d.Name)
		e.u(uint64(d.Ino))
	}
	return e.b
}

var errBadTree = errors.New("core: malformed tree object")

// decodeTree parses a tree plaintext (fuzzed by FuzzDecodeTree). It checks structure, not
// meaning; rebuild checks that names and parents make sense.
func decodeTree(b []byte) (*tree, error) {
	d := decoder{b: b}
	if string(d.fixed(len(treeMagic))) != treeMagic {
		return nil, errBadTree
	}
	t := &tree{NextIno: d.u()}
	n := d.count(15) // an inode entry takes at least 15 bytes
	t.Inodes = make([]treeInode, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		ti := treeInode{Ino: Ino(d.u())}
		ti.Node = decodeInode(&d, false)
		nx := d.count(2)
		for j := 0; j < nx && d.err == nil; j++ {
			ti.Xattrs = append(ti.Xattrs, xattr{Name: d.str(maxXattrName), Value: d.bytes(maxXattrValue)})
		}
		t.Inodes = append(t.Inodes, ti)
	}
	nd := d.count(3)
	t.Dirents = make([]treeDirent, 0, nd)
	for i := 0; i < nd && d.err == nil; i++ {
		t.Dirents = append(t.Dirents, treeDirent{Parent: Ino(d.u()), Name: d.str(maxNameLen), Ino: Ino(d.u())})
	}
	if err := d.end(); err != nil {
		return nil, errBadTree
	}
	return t, nil
}

type auxTable struct {
	Table   string
	Entries [][2][]byte
}

func encodeAux(a *auxTable) []byte {
	var e encoder
	e.fixed([]byte(auxMagic))
	e.str(a.Table)
	e.u(uint64(len(a.Entries)))
	for _, kv := range a.Entries {
		e.bytes(kv[0])
		e.bytes(kv[1])
	}
	return e.b
}

const maxAuxKey, maxAuxValue = 1 << 10, 16 << 20

func decodeAux(b []byte) (*auxTable, error) {
	d := decoder{b: b}
	if string(d.fixed(len(auxMagic))) != auxMagic {
		return nil, errBadTree
	}
	a := &auxTable{Table: d.str(64)}
	n := d.count(2)
	a.Entries = make([][2][]byte, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		a.Entries = append(a.Entries, [2][]byte{d.bytes(maxAuxKey), d.bytes(maxAuxValue)})
	}
	if err := d.end(); err != nil {
		return nil, errBadTree
	}
	return a, nil
}

type rootRec struct {
	Seq    uint64
	Prev   dedup.Locator
	Time   int64
	Shards []shardRef // tree objects, one per inode range (shard = ino / shardSize)
	Aux    []auxRef
	Device string // the device that wrote it (conflict copy names, imgfs status)
	// Writer is the writing cache's random id (its presence id): a cache that finds roots it
	// wrote itself after its anchor (killed before the anchor update reached its db)
	// continues after them instead of merging with itself (syncWithStore).
	Writer []byte
}

type shardRef struct {
	Shard uint64
	Loc   dedup.Locator
}

type auxRef struct {
	Table string
	Loc   dedup.Locator
}

func encodeRoot(r *rootRec) []byte {
	var e encoder
	e.fixed([]byte(rootMagic))
	e.u(r.Seq)
	e.fixed(r.Prev[:])
	e.i(r.Time)
	e.u(uint64(len(r.Shards)))
	for _, s := range r.Shards {
		e.u(s.Shard)
		e.fixed(s.Loc[:])
	}
	e.u(uint64(len(r.Aux)))
	for _, a := range r.Aux {
		e.str(a.Table)
		e.fixed(a.Loc[:])
	}
	e.str(r.Device)
	e.bytes(r.Writer)
	return e.b
}

func decodeRoot(b []byte) (*rootRec, error) {
	d := decoder{b: b}
	magic := string(d.fixed(len(rootMagic)))
	if magic != rootMagic && magic != rootMagicV2 {
		return nil, errBadTree
	}
	r := &rootRec{Seq: d.u()}
	copy(r.Prev[:], d.fixed(32))
	r.Time = d.i()
	ns := d.count(33)
	for i := 0; i < ns && d.err == nil; i++ {
		s := shardRef{Shard: d.u()}
		copy(s.Loc[:], d.fixed(32))
		r.Shards = append(r.Shards, s)
	}
	n := d.count(33)
	for i := 0; i < n && d.err == nil; i++ {
		a := auxRef{Table: d.str(64)}
		copy(a.Loc[:], d.fixed(32))
		r.Aux = append(r.Aux, a)
	}
	if magic == rootMagic {
		r.Device = d.str(maxNameLen)
		if w := d.bytes(64); len(w) > 0 { // nil when absent, as in an IMGFSRT2 root
			r.Writer = w
		}
	}
	if err := d.end(); err != nil {
		return nil, errBadTree
	}
	return r, nil
}
