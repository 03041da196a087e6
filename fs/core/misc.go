package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/dedup"
)

// ---- xattrs ----

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

// ---- aux tables ----

func validTable(table string) error {
	if table == "" || len(table) > 60 || strings.ContainsRune(table, '#') {
		return errnoErr(syscall.EINVAL, "aux table name must be 1-60 bytes without '#'")
	}
	return nil
}

func (f *FS) putAux(tx *bolt.Tx, table string, key, value []byte) error {
	k := f.lc.auxKey(table, key)
	return bputAux(tx, table, k, f.lc.seal("aux:"+table, k, encodeKV(key, value)))
}

// openAux decrypts and decodes the stored aux record v under bbolt key k of table.
func (f *FS) openAux(table string, k, v []byte) (key, value []byte, err error) {
	p, err := f.lc.open("aux:"+table, k, v)
	if err == nil {
		key, value, err = decodeKV(p, maxAuxKey, maxAuxValue)
	}
	if err != nil {
		return nil, nil, errnoErr(syscall.EIO, "aux record: %v", err)
	}
	return key, value, nil
}

// Aux tables are committed in 64 units per table ("table#NN", NN = first 6 bits of the
// entry's keyed hash), so one PutAux rewrites about 1/64 of its table at the next commit.
const auxUnits = 64

func auxUnit(table string, bk []byte) string { return fmt.Sprintf("%s#%02x", table, bk[0]>>2) }

// splitUnit is the inverse of auxUnit.
func splitUnit(unit string) (table string, shard byte, ok bool) {
	i := strings.LastIndexByte(unit, '#')
	if i < 1 || len(unit)-i != 3 {
		return "", 0, false
	}
	v, err := strconv.ParseUint(unit[i+1:], 16, 8)
	if err != nil || v >= auxUnits {
		return "", 0, false
	}
	return unit[:i], byte(v), true
}

// markAux records that the unit of bbolt key bk changed, in a tx that also bumps chg.
func markAux(tx *bolt.Tx, table string, bk []byte) error {
	return putU64(tx, mAuxDirty+auxUnit(table, bk), getU64(tx, mChg)+1)
}

// forAuxUnit calls fn for the entries of one unit.
func (f *FS) forAuxUnit(tx *bolt.Tx, unit string, fn func(k, v []byte) error) error {
	table, sh, ok := splitUnit(unit)
	if !ok {
		return nil
	}
	b := tx.Bucket(bAux).Bucket([]byte(table))
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, v := c.Seek([]byte{sh << 2}); k != nil && k[0]>>2 == sh; k, v = c.Next() {
		key, val, err := f.openAux(table, k, v)
		if err != nil {
			return err
		}
		if err := fn(key, val); err != nil {
			return err
		}
	}
	return nil
}

// PutAux stores key -> value in an aux table (keys up to 1 KiB, values up to 16 MiB).
func (f *FS) PutAux(table string, key, value []byte) error {
	if f.ro {
		return f.rofs()
	}
	if err := validTable(table); err != nil {
		return err
	}
	if len(key) == 0 || len(key) > maxAuxKey || len(value) > maxAuxValue {
		return errnoErr(syscall.EINVAL, "aux key or value size out of range")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.updateAux(table, func(tx *bolt.Tx) error {
		if err := markAux(tx, table, f.lc.auxKey(table, key)); err != nil {
			return err
		}
		return f.putAux(tx, table, key, value)
	})
}

func (f *FS) GetAux(table string, key []byte) ([]byte, error) {
	var out []byte
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bAux).Bucket([]byte(table))
		k := f.lc.auxKey(table, key)
		if b == nil || b.Get(k) == nil {
			return errnoErr(syscall.ENOENT, "no aux entry")
		}
		var err error
		_, out, err = f.openAux(table, k, b.Get(k))
		return err
	})
	return out, err
}

// DeleteAux removes key; deleting a missing key is not an error.
func (f *FS) DeleteAux(table string, key []byte) error {
	if f.ro {
		return f.rofs()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.updateAux(table, func(tx *bolt.Tx) error {
		b := tx.Bucket(bAux).Bucket([]byte(table))
		if b == nil {
			return nil
		}
		if err := markAux(tx, table, f.lc.auxKey(table, key)); err != nil {
			return err
		}
		return bdelAux(tx, table, f.lc.auxKey(table, key))
	})
}

// ForEachAux calls fn for every entry of table (in no particular order). It reads batches
// of entries and calls fn with no lock held, so fn may call any FS method; entries changed
// meanwhile may or may not be seen.
func (f *FS) ForEachAux(table string, fn func(key, value []byte) error) error {
	const batch = 512
	var after []byte // bbolt key of the last entry handed out
	for {
		var keys, vals [][]byte
		var last []byte
		err := f.view(func(tx *bolt.Tx) error {
			b := tx.Bucket(bAux).Bucket([]byte(table))
			if b == nil {
				return nil
			}
			c := b.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && string(k) == string(after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(keys) < batch; k, v = c.Next() {
				key, val, err := f.openAux(table, k, v)
				if err != nil {
					return err
				}
				keys, vals = append(keys, key), append(vals, val)
				last = append([]byte(nil), k...)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i := range keys {
			if err := fn(keys[i], vals[i]); err != nil {
				return err
			}
		}
		if len(keys) < batch {
			return nil
		}
		after = last
	}
}

// ---- content identity ----

// ContentID returns the ID of ino's sealed content (dedup.Content.ID: the locator of a
// one-chunk file); ok is false while the file has unsealed changes (or is not a regular
// file). Equal IDs mean byte-identical files.
func (f *FS) ContentID(ino Ino) (id [32]byte, ok bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err = f.viewLocked(func(tx *bolt.Tx) error {
		n, err := f.getInode(tx, ino)
		if err != nil {
			return err
		}
		if n.isReg() && n.HasRef && n.Spool == 0 && !f.openDirty(ino) {
			id, ok = n.Ref.ID(), true
		}
		return nil
	})
	return id, ok, err
}

// openDirty reports unflushed writes (f.mu held; reads the overlay without of.mu).
func (f *FS) openDirty(ino Ino) bool {
	of := f.open[ino]
	if of == nil {
		return false
	}
	of.amu.Lock()
	defer of.amu.Unlock()
	return of.overlay_ && of.dirtyHint
}

// ForEachFile calls fn for every regular file whose content is sealed (reindexing), with
// its ContentID. The list is taken first and fn runs with no lock held, so it may call any
// FS method.
func (f *FS) ForEachFile(fn func(ino Ino, id [32]byte) error) error {
	return f.ForEachContent(func(ino Ino, c dedup.Content) error { return fn(ino, c.ID()) })
}

// ForEachContent calls fn for every regular file whose content is sealed, with its chunk
// list (check, repair), like ForEachFile.
func (f *FS) ForEachContent(fn func(ino Ino, c dedup.Content) error) error {
	type file struct {
		ino Ino
		id  dedup.Content
	}
	var files []file
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bInodes).ForEach(func(k, v []byte) error {
			ino := Ino(be64u(k))
			n, err := f.getInode(tx, ino)
			if err != nil {
				return err
			}
			if n.isReg() && n.HasRef && n.Spool == 0 && n.Nlink > 0 {
				files = append(files, file{ino, n.Ref})
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, fl := range files {
		if err := fn(fl.ino, fl.id); err != nil {
			return err
		}
	}
	return nil
}

// ReferencedObjects returns the store names of every object the current root references
// (content, metadata, the root itself), plus content that the local working copy references
// but has not committed yet (also the bases of journalled spools): the live set for check
// and gc. Content means every chunk of every chunk list.
func (f *FS) ReferencedObjects(ctx context.Context) (map[string]bool, error) {
	live := map[string]bool{}
	var anchor uint64
	err := f.view(func(tx *bolt.Tx) error {
		anchor = getU64(tx, mAnchorSeq)
		err := tx.Bucket(bInodes).ForEach(func(k, v []byte) error {
			n, err := f.getInode(tx, Ino(be64u(k)))
			if err != nil {
				return err
			}
			if n.HasRef {
				addChunks(live, n.Ref)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bPending).ForEach(func(k, v []byte) error {
			if rec, err := decodePending(v); err == nil {
				addChunks(live, rec.Base)
			}
			return nil
		})
	})
	if err != nil || anchor == 0 {
		return live, err
	}
	r, _, err := f.loadRoot(ctx, anchor)
	if err != nil {
		return nil, err
	}
	live[dedup.RootName(anchor)] = true
	for _, s := range r.Shards {
		live[dedup.MetaName(s.Loc)] = true
	}
	for _, a := range r.Aux {
		live[dedup.MetaName(a.Loc)] = true
	}
	t, err := f.loadTree(ctx, r)
	if err != nil {
		return nil, err
	}
	for _, ti := range t.Inodes {
		if ti.Node.HasRef {
			addChunks(live, ti.Node.Ref)
		}
	}
	return live, nil
}

func addChunks(live map[string]bool, c dedup.Content) {
	for i := range c.Len() {
		live[dedup.ContentName(c.ChunkLocator(i))] = true
	}
}

// ---- status ----

func (f *FS) Statfs() (Statfs, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.dir, &st); err != nil {
		return Statfs{}, localErr("statfs", err)
	}
	s := Statfs{Bsize: 4096}
	scale := uint64(st.Bsize) / 4096
	if scale == 0 {
		scale = 1
	}
	// Space: the store is unbounded as far as we know; what can run out is the spool disk.
	s.Blocks, s.Bfree, s.Bavail = st.Blocks*scale, st.Bfree*scale, st.Bavail*scale
	if lim := f.opts.SpoolLimit; lim > 0 {
		free := max(lim-f.spoolUsed.Load(), 0) / 4096
		s.Blocks = uint64(lim / 4096)
		s.Bfree, s.Bavail = min(s.Bfree, uint64(free)), min(s.Bavail, uint64(free))
	}
	var files uint64
	f.view(func(tx *bolt.Tx) error {
		files = uint64(tx.Bucket(bInodes).Stats().KeyN)
		return nil
	})
	s.Files = files + 1<<32
	s.Ffree = 1 << 32
	return s, nil
}

// Status counts files, bytes and pending work (a scan of the working copy).
func (f *FS) Status() Status {
	var s Status
	seen := map[dedup.Locator]bool{}
	f.view(func(tx *bolt.Tx) error {
		tx.Bucket(bInodes).ForEach(func(k, v []byte) error {
			n, err := f.getInode(tx, Ino(be64u(k)))
			if err != nil || n.Nlink == 0 {
				return nil
			}
			switch {
			case n.isDir():
				s.Dirs++
			case n.isReg():
				s.Files++
				s.LogicalBytes += n.Size
				for i := range n.Ref.Len() {
					if l := n.Ref.ChunkLocator(i); !seen[l] {
						seen[l] = true
						s.ContentObjects++
						s.StoredBytes += dedup.ObjectSize(n.Ref.Chunk(i).Size)
					}
				}
			}
			return nil
		})
		return nil
	})
	p := f.Pending()
	s.PendingSeals, s.PendingUploads, s.PendingCommit = p.PendingSeals, p.PendingUploads, p.PendingCommit
	return s
}

// Pending is Status without the totals: what is not yet sealed, stored or committed. Its
// cost is the pending work, not the vault (Status decrypts every inode record), so `imgfs
// sync` answers with it (docs/scale.md).
func (f *FS) Pending() Status {
	var s Status
	f.view(func(tx *bolt.Tx) error {
		// Counted with a cursor: Stats reads committed pages only, not the running batch.
		tx.Bucket(bPending).ForEach(func(_, _ []byte) error {
			s.PendingSeals++
			return nil
		})
		s.PendingCommit = getU64(tx, mChg) != getU64(tx, mCommitted)
		return nil
	})
	s.PendingUploads = f.uploading.Load()
	return s
}

// Sync waits until nothing is pending: every flushed file sealed and stored, the root
// written. Files with unflushed writes (open, not yet closed) are not included.
func (f *FS) Sync(ctx context.Context) error {
	if f.ro {
		return nil
	}
	for round := 0; ; round++ {
		var ids []uint64
		err := f.view(func(tx *bolt.Tx) error {
			return tx.Bucket(bPending).ForEach(func(k, _ []byte) error {
				ids = append(ids, be64u(k))
				return nil
			})
		})
		if err != nil {
			return err
		}
		if len(ids) == 0 || round > 3 {
			break
		}
		var errs []error
		for _, id := range ids {
			if err := f.sealNow(ctx, id); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return f.commitNow(ctx)
}
