package core

import (
	"os"
	"time"

	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
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
	Ref                 dedup.Ref // last sealed content (kept while a newer spool is pending)
	Spool               uint64    // local only: flushed spool awaiting sealing, 0 = none
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
		e.byte1(1)
		e.fixed(n.Ref.Locator[:])
		e.fixed(n.Ref.Key)
		e.i(n.Ref.Size)
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
	switch d.byte1() {
	case 0:
	case 1:
		n.HasRef = true
		copy(n.Ref.Locator[:], d.fixed(32))
		n.Ref.Key = keyring.Secret(append([]byte(nil), d.fixed(32)...))
		n.Ref.Size = d.i()
		if n.Ref.Size < 0 || n.Ref.Size > dedup.MaxPlainSize {
			d.fail()
		}
	default:
		d.fail()
	}
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
type pendingRec struct {
	Ino  Ino
	Size int64
}

const journalVersion = 1

func encodePending(p pendingRec) []byte {
	var e encoder
	e.byte1(journalVersion)
	e.u(uint64(p.Ino))
	e.i(p.Size)
	return e.b
}

// decodePending is the journal record decoder (fuzzed by FuzzDecodeJournal).
func decodePending(b []byte) (pendingRec, error) {
	d := decoder{b: b}
	if d.byte1() != journalVersion {
		d.fail()
	}
	p := pendingRec{Ino: Ino(d.u()), Size: d.i()}
	if p.Size < 0 || p.Size > dedup.MaxPlainSize {
		d.fail()
	}
	return p, d.end()
}
