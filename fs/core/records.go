package core

import (
	"os"
	"time"

	"github.com/imgfs/imgfs/dedup"
)

const (
	maxNameLen    = 255
	maxTargetLen  = 4096
	maxXattrName  = 255
	maxXattrValue = 64 << 10
)

// inode is one inode record of the working copy (bbolt bucket "inodes", sealed with the
// local key) and, without the local-only fields, one entry of a tree object.
type inode struct {
	Mode                os.FileMode
	Uid, Gid            uint32
	Nlink               uint32
	Size                int64  // size of the current content (spool if Spool != 0, else Ref)
	Atime, Mtime, Ctime int64  // Unix nanoseconds
	Parent              Ino    // one parent (exact for directories; a hint for files)
	Name                string // the name under Parent
	Target              string // symlink target
	HasRef              bool
	Ref                 dedup.Content // last sealed content (kept while a newer spool is pending)
	Spool               uint64        // local only: flushed spool awaiting sealing, 0 = none
}

func (n *inode) isDir() bool     { return n.Mode&os.ModeDir != 0 }
func (n *inode) isSymlink() bool { return n.Mode&os.ModeSymlink != 0 }
func (n *inode) isReg() bool     { return n.Mode.IsRegular() }

func (n *inode) attr(ino Ino) Attr {
	return Attr{Ino: ino, Mode: n.Mode, Size: n.Size, Nlink: n.Nlink, Uid: n.Uid, Gid: n.Gid,
		Atime: time.Unix(0, n.Atime), Mtime: time.Unix(0, n.Mtime), Ctime: time.Unix(0, n.Ctime)}
}

const inodeVersion = 1

func (n *inode) encode(e *encoder, local bool) {
	e.byte1(inodeVersion)
	e.u(uint64(n.Mode))
	e.u(uint64(n.Uid))
	e.u(uint64(n.Gid))
	e.u(uint64(n.Nlink))
	e.i(n.Size)
	e.i(n.Atime)
	e.i(n.Mtime)
	e.i(n.Ctime)
	e.u(uint64(n.Parent))
	e.str(n.Name)
	e.str(n.Target)
	if n.HasRef {
		e.b = n.Ref.AppendBinary(e.b) // tag 1 (one chunk, the v1 layout) or 2 (a list)
	} else {
		e.byte1(0)
	}
	if local {
		e.u(n.Spool)
	}
}

func decodeInode(d *decoder, local bool) inode {
	var n inode
	if d.byte1() != inodeVersion {
		d.fail()
		return n
	}
	n.Mode = os.FileMode(d.u32())
	n.Uid = d.u32()
	n.Gid = d.u32()
	n.Nlink = d.u32()
	n.Size = d.i()
	n.Atime = d.i()
	n.Mtime = d.i()
	n.Ctime = d.i()
	n.Parent = Ino(d.u())
	n.Name = d.str(maxNameLen)
	n.Target = d.str(maxTargetLen)
	n.HasRef, n.Ref = d.content()
	if local {
		n.Spool = d.u()
	}
	if n.Size < 0 {
		d.fail()
	}
	return n
}

func encodeInodeRecord(n *inode) []byte {
	var e encoder
	n.encode(&e, true)
	return e.b
}

func decodeInodeRecord(b []byte) (inode, error) {
	d := decoder{b: b}
	n := decodeInode(&d, true)
	return n, d.end()
}

// pendingRec is one journal record (bucket "pending", key = spool id): "inode Ino has
// flushed content in that spool file, Size bytes". It is written in the same bbolt
// transaction that points the inode at the spool, so a crash sees both or neither.
// The spool is an overlay (docs/core.md): blocks it does not hold are the bytes of Base
// below BaseLen, zeros above.
type pendingRec struct {
	Ino     Ino
	Size    int64
	Base    dedup.Content
	BaseLen int64
}

// journal record: version 1 = ino size (a whole-file spool, no base);
// version 2 = ino size baseLen hasBase [content].
const journalVersion = 2

func encodePending(p pendingRec) []byte {
	var e encoder
	e.byte1(journalVersion)
	e.u(uint64(p.Ino))
	e.i(p.Size)
	e.i(p.BaseLen)
	e.b = p.Base.AppendBinary(e.b)
	return e.b
}

// decodePending is the journal record decoder (fuzzed by FuzzDecodeJournal).
func decodePending(b []byte) (pendingRec, error) {
	d := decoder{b: b}
	v := d.byte1()
	if v != 1 && v != journalVersion {
		d.fail()
	}
	p := pendingRec{Ino: Ino(d.u()), Size: d.i()}
	if v == journalVersion {
		p.BaseLen = d.i()
		var has bool
		has, p.Base = d.content()
		if !has || p.BaseLen < 0 || p.BaseLen > p.Base.Size() {
			d.fail()
		}
	}
	if p.Size < 0 || p.Size > dedup.MaxPlainSize {
		d.fail()
	}
	return p, d.end()
}

// content decodes a chunk list preceded by its tag; tag 0 is "none".
func (d *decoder) content() (bool, dedup.Content) {
	if d.err != nil || len(d.b) == 0 {
		d.fail()
		return false, dedup.Content{}
	}
	if d.b[0] == 0 {
		d.b = d.b[1:]
		return false, dedup.Content{}
	}
	c, n, err := dedup.DecodeContent(d.b)
	if err != nil {
		d.fail()
		return false, dedup.Content{}
	}
	d.b = d.b[n:]
	return true, c
}
