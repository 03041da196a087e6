package core

import (
	"context"
	"os"
	"strings"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// update runs fn in the shared write transaction (see batch.go) and marks the namespace
// changed. Callers hold f.mu.
func (f *FS) update(fn func(tx *bolt.Tx) error) error {
	err := f.writeLocked(func(tx *bolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return change(tx)
	})
	if err != nil {
		return err
	}
	f.kickCommit()
	return nil
}

// asErrno leaves errno-carrying errors alone and maps the rest (bbolt, disk) to EIO or
// the disk's errno.
func asErrno(err error) error {
	if err == nil {
		return nil
	}
	var en syscall.Errno
	if errorsAs(err, &en) {
		return err
	}
	return localErr("local state", err)
}

// view runs fn on the current state (including batched, uncommitted changes).
func (f *FS) view(fn func(tx *bolt.Tx) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.viewLocked(fn)
}

// viewLocked is view with f.mu held.
func (f *FS) viewLocked(fn func(tx *bolt.Tx) error) error {
	if f.wtx != nil {
		return asErrno(fn(f.wtx))
	}
	return asErrno(f.db.View(fn))
}

// attrLocked is GetAttr with f.mu held: the bbolt record plus unflushed size/mtime of an
// open file.
func (f *FS) attrLocked(tx *bolt.Tx, ino Ino) (Attr, error) {
	n, err := f.getInode(tx, ino)
	if err != nil {
		return Attr{}, err
	}
	a := n.attr(ino)
	if of := f.open[ino]; of != nil {
		of.overlay(&a)
	}
	return a, nil
}

func (f *FS) dirInode(tx *bolt.Tx, ino Ino) (inode, error) {
	n, err := f.getInode(tx, ino)
	if err != nil {
		return n, err
	}
	if !n.isDir() {
		return n, errnoErr(syscall.ENOTDIR, "inode %d is not a directory", ino)
	}
	return n, nil
}

func (f *FS) Lookup(parent Ino, name string) (Attr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var a Attr
	err := f.viewLocked(func(tx *bolt.Tx) error {
		de, ok, err := f.getDirent(tx, parent, name)
		if err != nil {
			return err
		}
		if !ok {
			// Only a live directory has entries: its inode is read (and decrypted) for
			// the errno of a miss only, not on every hit (ls -lR looks up every name).
			if _, err := f.dirInode(tx, parent); err != nil {
				return err
			}
			return errnoErr(syscall.ENOENT, "%q not found", name)
		}
		a, err = f.attrLocked(tx, de.Ino)
		return err
	})
	return a, err
}

func (f *FS) GetAttr(ino Ino) (Attr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var a Attr
	err := f.viewLocked(func(tx *bolt.Tx) error {
		var err error
		a, err = f.attrLocked(tx, ino)
		return err
	})
	return a, err
}

// SetAttr changes the requested fields. A size change of a regular file goes through the
// write path (copy-on-write spool, then a flush), so it is as durable as close(2).
func (f *FS) SetAttr(ino Ino, req SetAttrRequest) (Attr, error) {
	if f.ro {
		return Attr{}, f.rofs()
	}
	if req.Size != nil {
		if *req.Size < 0 {
			return Attr{}, errnoErr(syscall.EINVAL, "negative size")
		}
		if err := f.truncateIno(ino, *req.Size); err != nil {
			return Attr{}, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var a Attr
	err := f.update(func(tx *bolt.Tx) error {
		n, err := f.getInode(tx, ino)
		if err != nil {
			return err
		}
		now := nowNs()
		if req.Mode != nil {
			n.Mode = n.Mode.Type() | (*req.Mode &^ os.ModeType)
		}
		if req.Uid != nil {
			n.Uid = *req.Uid
		}
		if req.Gid != nil {
			n.Gid = *req.Gid
		}
		if req.Atime != nil {
			n.Atime = req.Atime.UnixNano()
		}
		if req.Mtime != nil {
			n.Mtime = req.Mtime.UnixNano()
			if of := f.open[ino]; of != nil {
				of.setMtime(n.Mtime)
			}
		}
		n.Ctime = now
		if err := f.putInode(tx, ino, &n); err != nil {
			return err
		}
		a, err = f.attrLocked(tx, ino)
		return err
	})
	return a, err
}

// newChild links a new inode under parent; the caller fills n.
func (f *FS) newChild(tx *bolt.Tx, parent Ino, name string, n *inode) (Ino, error) {
	p, err := f.dirInode(tx, parent)
	if err != nil {
		return 0, err
	}
	if _, ok, err := f.getDirent(tx, parent, name); err != nil {
		return 0, err
	} else if ok {
		return 0, errnoErr(syscall.EEXIST, "%q exists", name)
	}
	ino, err := f.allocIno(tx)
	if err != nil {
		return 0, err
	}
	now := nowNs()
	n.Atime, n.Mtime, n.Ctime = now, now, now
	n.Parent, n.Name = parent, name
	if n.Uid == 0 && n.Gid == 0 {
		n.Uid, n.Gid = uint32(os.Getuid()), uint32(os.Getgid())
	}
	if n.isDir() {
		p.Nlink++
	}
	p.Mtime, p.Ctime = now, now
	if err := f.putInode(tx, parent, &p); err != nil {
		return 0, err
	}
	if err := f.putInode(tx, ino, n); err != nil {
		return 0, err
	}
	return ino, f.putDirent(tx, parent, dirent{Name: name, Ino: ino, Mode: n.Mode.Type()})
}

func (f *FS) Mkdir(parent Ino, name string, mode os.FileMode) (Attr, error) {
	if f.ro {
		return Attr{}, f.rofs()
	}
	if err := checkName(name); err != nil {
		return Attr{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var a Attr
	err := f.update(func(tx *bolt.Tx) error {
		n := inode{Mode: os.ModeDir | mode.Perm() | (mode & (os.ModeSetgid | os.ModeSticky)), Nlink: 2}
		ino, err := f.newChild(tx, parent, name, &n)
		if err != nil {
			return err
		}
		a = n.attr(ino)
		return nil
	})
	return a, err
}

// Symlink is a durability barrier (like Rename).
func (f *FS) Symlink(parent Ino, name, target string) (_ Attr, err error) {
	if f.ro {
		return Attr{}, f.rofs()
	}
	if err := checkName(name); err != nil {
		return Attr{}, err
	}
	if target == "" || len(target) > maxTargetLen {
		return Attr{}, errnoErr(syscall.EINVAL, "bad symlink target length")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var a Attr
	err = f.update(func(tx *bolt.Tx) error {
		n := inode{Mode: os.ModeSymlink | 0o777, Nlink: 1, Target: target, Size: int64(len(target))}
		ino, err := f.newChild(tx, parent, name, &n)
		if err != nil {
			return err
		}
		a = n.attr(ino)
		return nil
	})
	return a, err
}

func (f *FS) Readlink(ino Ino) (string, error) {
	var t string
	err := f.view(func(tx *bolt.Tx) error {
		n, err := f.getInode(tx, ino)
		if err != nil {
			return err
		}
		if !n.isSymlink() {
			return errnoErr(syscall.EINVAL, "not a symlink")
		}
		t = n.Target
		return nil
	})
	return t, err
}

// Link is a durability barrier (like Rename).
func (f *FS) Link(ino Ino, newParent Ino, newName string) (_ Attr, err error) {
	if f.ro {
		return Attr{}, f.rofs()
	}
	if err := checkName(newName); err != nil {
		return Attr{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var a Attr
	err = f.update(func(tx *bolt.Tx) error {
		n, err := f.getInode(tx, ino)
		if err != nil {
			return err
		}
		if n.isDir() {
			return errnoErr(syscall.EPERM, "hard link to a directory")
		}
		if n.Nlink == 0 {
			return errnoErr(syscall.ENOENT, "inode %d was unlinked", ino)
		}
		p, err := f.dirInode(tx, newParent)
		if err != nil {
			return err
		}
		if _, ok, err := f.getDirent(tx, newParent, newName); err != nil {
			return err
		} else if ok {
			return errnoErr(syscall.EEXIST, "%q exists", newName)
		}
		now := nowNs()
		n.Nlink++
		n.Ctime = now
		p.Mtime, p.Ctime = now, now
		if err := f.putInode(tx, newParent, &p); err != nil {
			return err
		}
		if err := f.putInode(tx, ino, &n); err != nil {
			return err
		}
		if err := f.putDirent(tx, newParent, dirent{Name: newName, Ino: ino, Mode: n.Mode.Type()}); err != nil {
			return err
		}
		a, err = f.attrLocked(tx, ino)
		return err
	})
	return a, err
}

// dropLink removes one link of a non-directory inode (its dirent is already gone). At zero
// links the inode is deleted, or kept as an orphan while a handle has it open.
func (f *FS) dropLink(tx *bolt.Tx, ino Ino, n *inode, parent Ino, name string) error {
	now := nowNs()
	n.Nlink--
	n.Ctime = now
	if n.Nlink > 0 {
		if n.Parent == parent && n.Name == name {
			// The primary name went away: find another one (only hard-linked files get here).
			n.Parent, n.Name = 0, ""
			c := tx.Bucket(bDirents).Cursor()
			for k, v := c.First(); k != nil && n.Parent == 0; k, v = c.Next() {
				p, err := f.lc.open("dirents", k, v)
				if err != nil {
					continue
				}
				if de, err := decodeDirent(p); err == nil && de.Ino == ino {
					n.Parent, n.Name = Ino(be64u(k[:8])), de.Name
				}
			}
		}
		return f.putInode(tx, ino, n)
	}
	if f.open[ino] != nil {
		f.open[ino].setUnlinked()
		if err := bput(tx, bOrphans, be64(uint64(ino)), []byte{}); err != nil {
			return err
		}
		return f.putInode(tx, ino, n)
	}
	return f.deleteInode(tx, ino, n)
}

// deleteInode removes an inode record, its xattrs and its pending journal record; the
// spool file goes after the transaction (see dropSpoolLater).
func (f *FS) deleteInode(tx *bolt.Tx, ino Ino, n *inode) error {
	if n.Spool != 0 {
		if err := bdel(tx, bPending, be64(n.Spool)); err != nil {
			return err
		}
		f.dropSpoolAfter(tx, n.Spool)
	}
	c := tx.Bucket(bXattrs).Cursor()
	pre := be64(uint64(ino))
	for k, _ := c.Seek(pre); k != nil && string(k[:8]) == string(pre); k, _ = c.Seek(pre) {
		if err := bdel(tx, bXattrs, append([]byte(nil), k...)); err != nil {
			return err
		}
	}
	if err := bdel(tx, bOrphans, pre); err != nil {
		return err
	}
	if err := markShard(tx, ino); err != nil {
		return err
	}
	return bdel(tx, bInodes, pre)
}

// dropSpoolAfter deletes a spool file once tx has committed (never before: until then the
// journal may still point at it).
func (f *FS) dropSpoolAfter(tx *bolt.Tx, id uint64) {
	tx.OnCommit(func() { f.removeSpool(id) })
}

func (f *FS) Remove(parent Ino, name string, dir bool) error {
	if f.ro {
		return f.rofs()
	}
	if err := checkName(name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.update(func(tx *bolt.Tx) error {
		p, err := f.dirInode(tx, parent)
		if err != nil {
			return err
		}
		de, err := f.lookupDirent(tx, parent, name)
		if err != nil {
			return err
		}
		n, err := f.getInode(tx, de.Ino)
		if err != nil {
			return err
		}
		now := nowNs()
		p.Mtime, p.Ctime = now, now
		if dir {
			if !n.isDir() {
				return errnoErr(syscall.ENOTDIR, "%q is not a directory", name)
			}
			if err := f.checkEmpty(tx, de.Ino); err != nil {
				return err
			}
			p.Nlink--
			if err := f.delDirent(tx, parent, name, de.Ino); err != nil {
				return err
			}
			if err := f.putInode(tx, parent, &p); err != nil {
				return err
			}
			return f.deleteInode(tx, de.Ino, &n)
		}
		if n.isDir() {
			return errnoErr(syscall.EISDIR, "%q is a directory", name)
		}
		if err := f.delDirent(tx, parent, name, de.Ino); err != nil {
			return err
		}
		if err := f.putInode(tx, parent, &p); err != nil {
			return err
		}
		return f.dropLink(tx, de.Ino, &n, parent, name)
	})
}

func (f *FS) checkEmpty(tx *bolt.Tx, dir Ino) error {
	c := tx.Bucket(bDirents).Cursor()
	pre := be64(uint64(dir))
	if k, _ := c.Seek(pre); k != nil && string(k[:8]) == string(pre) {
		return errnoErr(syscall.ENOTEMPTY, "directory not empty")
	}
	return nil
}

// Rename moves oldParent/oldName to newParent/newName, atomically replacing a file there
// (or an empty directory when a directory moves). Moving a directory into itself is EINVAL.
//
// Rename is a durability barrier: when it returns, the new name survives kill -9 (editors
// and the T39 driver treat a completed temp+rename save as acknowledged).
func (f *FS) Rename(oldParent Ino, oldName string, newParent Ino, newName string) (err error) {
	if f.ro {
		return f.rofs()
	}
	if err := checkName(oldName); err != nil {
		return err
	}
	if err := checkName(newName); err != nil {
		return err
	}
	if err := f.sealBeforeReplace(oldParent, oldName, newParent, newName); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.update(func(tx *bolt.Tx) error {
		op, err := f.dirInode(tx, oldParent)
		if err != nil {
			return err
		}
		if _, err := f.dirInode(tx, newParent); err != nil {
			return err
		}
		src, err := f.lookupDirent(tx, oldParent, oldName)
		if err != nil {
			return err
		}
		if oldParent == newParent && oldName == newName {
			return nil
		}
		sn, err := f.getInode(tx, src.Ino)
		if err != nil {
			return err
		}
		if sn.isDir() && newParent != oldParent {
			// No moving a directory below itself: walk up from the new parent.
			for a := newParent; a != RootIno; {
				if a == src.Ino {
					return errnoErr(syscall.EINVAL, "cannot move a directory into itself")
				}
				an, err := f.getInode(tx, a)
				if err != nil {
					return err
				}
				a = an.Parent
			}
		}
		now := nowNs()
		dst, exists, err := f.getDirent(tx, newParent, newName)
		if err != nil {
			return err
		}
		if exists {
			if dst.Ino == src.Ino {
				return nil // two links of one inode: POSIX says do nothing
			}
			dn, err := f.getInode(tx, dst.Ino)
			if err != nil {
				return err
			}
			switch {
			case sn.isDir() && !dn.isDir():
				return errnoErr(syscall.ENOTDIR, "%q is not a directory", newName)
			case !sn.isDir() && dn.isDir():
				return errnoErr(syscall.EISDIR, "%q is a directory", newName)
			}
			if dn.isDir() {
				if err := f.checkEmpty(tx, dst.Ino); err != nil {
					return err
				}
			}
			// Every check is done: from here on only writes (the batch must not keep half an op).
			if err := f.delDirent(tx, newParent, newName, dst.Ino); err != nil {
				return err
			}
			if dn.isDir() {
				if err := f.deleteInode(tx, dst.Ino, &dn); err != nil {
					return err
				}
				if err := f.adjustNlink(tx, newParent, -1); err != nil {
					return err
				}
			} else if err := f.dropLink(tx, dst.Ino, &dn, newParent, newName); err != nil {
				return err
			}
		}
		if err := f.delDirent(tx, oldParent, oldName, src.Ino); err != nil {
			return err
		}
		if err := f.putDirent(tx, newParent, dirent{Name: newName, Ino: src.Ino, Mode: sn.Mode.Type()}); err != nil {
			return err
		}
		if sn.Parent == oldParent && sn.Name == oldName || sn.isDir() {
			sn.Parent, sn.Name = newParent, newName
		}
		sn.Ctime = now
		if err := f.putInode(tx, src.Ino, &sn); err != nil {
			return err
		}
		op, err = f.getInode(tx, oldParent) // may have changed above
		if err != nil {
			return err
		}
		op.Mtime, op.Ctime = now, now
		if sn.isDir() && oldParent != newParent {
			op.Nlink--
		}
		if err := f.putInode(tx, oldParent, &op); err != nil {
			return err
		}
		if oldParent != newParent {
			np, err := f.getInode(tx, newParent)
			if err != nil {
				return err
			}
			np.Mtime, np.Ctime = now, now
			if sn.isDir() {
				np.Nlink++
			}
			return f.putInode(tx, newParent, &np)
		}
		return nil
	})
}

func (f *FS) adjustNlink(tx *bolt.Tx, ino Ino, d int) error {
	n, err := f.getInode(tx, ino)
	if err != nil {
		return err
	}
	n.Nlink = uint32(int(n.Nlink) + d)
	return f.putInode(tx, ino, &n)
}

func (f *FS) ReadDir(ino Ino) ([]DirEntry, error) {
	var out []DirEntry
	err := f.view(func(tx *bolt.Tx) error {
		if _, err := f.dirInode(tx, ino); err != nil {
			return err
		}
		return f.forDirents(tx, ino, func(de dirent) error {
			out = append(out, DirEntry{Name: de.Name, Ino: de.Ino, Mode: de.Mode})
			return nil
		})
	})
	return out, err
}

// Resolve walks a slash-separated path from the root (for the CLI).
func (f *FS) Resolve(path string) (Ino, error) {
	ino := RootIno
	err := f.view(func(tx *bolt.Tx) error {
		for _, part := range strings.Split(path, "/") {
			if part == "" || part == "." {
				continue
			}
			if _, err := f.dirInode(tx, ino); err != nil {
				return err
			}
			de, err := f.lookupDirent(tx, ino, part)
			if err != nil {
				return err
			}
			ino = de.Ino
		}
		return nil
	})
	return ino, err
}

// Path returns one path of ino from the root (for .similar/ targets and messages).
func (f *FS) Path(ino Ino) (string, error) {
	var parts []string
	err := f.view(func(tx *bolt.Tx) error {
		for a := ino; a != RootIno; {
			n, err := f.getInode(tx, a)
			if err != nil {
				return err
			}
			if n.Parent == 0 || len(parts) > 4096 {
				return errnoErr(syscall.ENOENT, "inode %d has no path", ino)
			}
			parts = append(parts, n.Name)
			a = n.Parent
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteString("/")
		b.WriteString(parts[i])
	}
	if b.Len() == 0 {
		return "/", nil
	}
	return b.String(), nil
}

// sealBeforeReplace seals a never-sealed source file before it is renamed over a name whose
// file the store already has. A root names only sealed content, so the next root would omit
// the unsealed source and, with it, the name: after the loss of the machine the name would be
// gone although its old version was fsync-acknowledged (editors save by temp + rename).
// Sealing first keeps the name in every root, with the old or the new version.
func (f *FS) sealBeforeReplace(oldParent Ino, oldName string, newParent Ino, newName string) error {
	var src Ino
	f.mu.Lock()
	err := f.viewLocked(func(tx *bolt.Tx) error {
		d, ok, err := f.getDirent(tx, oldParent, oldName)
		if err != nil || !ok {
			return err
		}
		sn, err := f.getInode(tx, d.Ino)
		if err != nil || !sn.isReg() || sn.HasRef || sn.Spool == 0 {
			return err
		}
		t, ok, err := f.getDirent(tx, newParent, newName)
		if err != nil || !ok {
			return err
		}
		tn, err := f.getInode(tx, t.Ino)
		if err != nil || !tn.isReg() || !tn.HasRef {
			return err
		}
		src = d.Ino
		return nil
	})
	f.mu.Unlock()
	if err != nil || src == 0 {
		return nil // Rename itself reports lookup errors
	}
	if err := f.sealIno(context.Background(), src); err != nil {
		// The store is failing: rename anyway (it must keep working offline); the name is
		// back in the roots once the background sealer stores the file.
		f.log.Warn("core: could not seal a file before renaming it over a stored one", "ino", uint64(src), "err", err)
	}
	return nil
}
