package core

// Statfs, Status, Pending and Sync: what `imgfs status`, `imgfs sync` and statfs(2) ask.

import (
	"context"
	"errors"
	"syscall"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/dedup"
)

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
