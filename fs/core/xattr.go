package core

// Extended attributes of inodes (docs/core.md): stored in the inode's bbolt record set,
// carried by the tree objects.

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

const (
	xattrCreate  = 1 // XATTR_CREATE
	xattrReplace = 2 // XATTR_REPLACE
)

func encodeKV(k, v []byte) []byte {
	var e encoder
	e.bytes(k)
	e.bytes(v)
	return e.b
}

func decodeKV(b []byte, maxK, maxV int) ([]byte, []byte, error) {
	d := decoder{b: b}
	k, v := d.bytes(maxK), d.bytes(maxV)
	return k, v, d.end()
}

func (f *FS) decodeXattr(k, v []byte) (xattr, error) {
	p, err := f.lc.open("xattrs", k, v)
	if err != nil {
		return xattr{}, errnoErr(syscall.EIO, "xattr: %v", err)
	}
	name, val, err := decodeKV(p, maxXattrName, maxXattrValue)
	if err != nil {
		return xattr{}, errnoErr(syscall.EIO, "xattr: %v", err)
	}
	return xattr{Name: string(name), Value: val}, nil
}

func (f *FS) putXattr(tx *bolt.Tx, ino Ino, name string, value []byte) error {
	if err := markShard(tx, ino); err != nil {
		return err
	}
	k := f.lc.xattrKey(ino, name)
	return bput(tx, bXattrs, k, f.lc.seal("xattrs", k, encodeKV([]byte(name), value)))
}

// errNoXattr is GetXattr's miss, the common answer (one per file of an ls -l), made once.
var errNoXattr = errnoErr(syscall.ENODATA, "no such xattr")

func (f *FS) GetXattr(ino Ino, name string) ([]byte, error) {
	var out []byte
	err := f.view(func(tx *bolt.Tx) error {
		// The inode must exist; it is not decrypted (ls -l asks every file for
		// security.selinux).
		if tx.Bucket(bInodes).Get(be64(uint64(ino))) == nil {
			return errnoErr(syscall.ENOENT, "inode %d", ino)
		}
		k := f.lc.xattrKey(ino, name)
		v := tx.Bucket(bXattrs).Get(k)
		if v == nil {
			return errNoXattr
		}
		x, err := f.decodeXattr(k, v)
		out = x.Value
		return err
	})
	return out, err
}

// SetXattr sets an extended attribute; flags are XATTR_CREATE (1) and XATTR_REPLACE (2).
func (f *FS) SetXattr(ino Ino, name string, value []byte, flags int) error {
	if f.ro {
		return f.rofs()
	}
	switch {
	case name == "":
		return errnoErr(syscall.EINVAL, "empty xattr name")
	case len(name) > maxXattrName:
		return errnoErr(syscall.ERANGE, "xattr name too long")
	case len(value) > maxXattrValue:
		return errnoErr(syscall.E2BIG, "xattr value too large")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.update(func(tx *bolt.Tx) error {
		n, err := f.getInode(tx, ino)
		if err != nil {
			return err
		}
		exists := tx.Bucket(bXattrs).Get(f.lc.xattrKey(ino, name)) != nil
		if flags&xattrCreate != 0 && exists {
			return errnoErr(syscall.EEXIST, "xattr %q exists", name)
		}
		if flags&xattrReplace != 0 && !exists {
			return errnoErr(syscall.ENODATA, "no xattr %q", name)
		}
		n.Ctime = nowNs()
		if err := f.putInode(tx, ino, &n); err != nil {
			return err
		}
		return f.putXattr(tx, ino, name, value)
	})
}

func (f *FS) ListXattr(ino Ino) ([]string, error) {
	var names []string
	err := f.view(func(tx *bolt.Tx) error {
		if _, err := f.getInode(tx, ino); err != nil {
			return err
		}
		c := tx.Bucket(bXattrs).Cursor()
		pre := be64(uint64(ino))
		for k, v := c.Seek(pre); k != nil && string(k[:8]) == string(pre); k, v = c.Next() {
			x, err := f.decodeXattr(k, v)
			if err != nil {
				return err
			}
			names = append(names, x.Name)
		}
		return nil
	})
	return names, err
}

func (f *FS) RemoveXattr(ino Ino, name string) error {
	if f.ro {
		return f.rofs()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.update(func(tx *bolt.Tx) error {
		n, err := f.getInode(tx, ino)
		if err != nil {
			return err
		}
		k := f.lc.xattrKey(ino, name)
		if tx.Bucket(bXattrs).Get(k) == nil {
			return errnoErr(syscall.ENODATA, "no xattr %q", name)
		}
		n.Ctime = nowNs()
		if err := f.putInode(tx, ino, &n); err != nil {
			return err
		}
		return bdel(tx, bXattrs, k)
	})
}
