// Package core is imgfs's FUSE-free file system: the namespace (inodes, names, attributes,
// content references) kept in a local bbolt working copy and committed to the store as
// encrypted metadata objects plus a root pointer; the encrypted write spool and its journal;
// background sealing and upload; the verified read cache. fs/ adapts it to bazil.org/fuse and
// the CLI (import, export, ls) uses it directly.
//
// Errors: every error matches a syscall.Errno with errors.Is (ENOENT, EEXIST, ENOTDIR, EISDIR,
// ENOTEMPTY, ENOSPC, EIO, EROFS, ENODATA, ...), wrapping allowed; fs/ maps them to bare errnos.
// Handle.ReadAt follows io.ReaderAt (io.EOF at the end of the file).
//
// Durability (docs/core.md): Handle.Flush = close(2): spool + journal fsynced (survives
// kill -9 and reboot). Handle.Fsync: content stored and a root written (survives machine
// loss). Rename, Link and Symlink are barriers too; other namespace changes are batched and
// durable at the next barrier or within 200 ms. Sync: everything flushed is sealed, stored
// and in a root. Open with an empty CacheDir rebuilds the working copy from the newest root;
// a cache whose last root is newer than the store's fails with "rollback detected".
package core

import (
	"log/slog"
	"os"
	"time"
)

// Ino identifies an inode; it is stable for the life of the vault.
type Ino uint64

// RootIno is the root directory.
const RootIno Ino = 1

// Attr is what stat(2) shows.
type Attr struct {
	Ino   Ino
	Mode  os.FileMode // permission bits plus os.ModeDir / os.ModeSymlink
	Size  int64
	Nlink uint32
	Uid   uint32
	Gid   uint32
	Atime time.Time
	Mtime time.Time
	Ctime time.Time
}

// DirEntry is one readdir entry.
type DirEntry struct {
	Name string
	Ino  Ino
	Mode os.FileMode // type bits only are meaningful
}

// SetAttrRequest changes the fields that are non-nil.
type SetAttrRequest struct {
	Mode  *os.FileMode
	Uid   *uint32
	Gid   *uint32
	Size  *int64 // truncate
	Atime *time.Time
	Mtime *time.Time
}

// Options configure Open.
type Options struct {
	CacheDir   string // local state: bbolt db, spool, journal, read cache (created 0700)
	ReadOnly   bool
	SpoolLimit int64 // bytes; 0 = no limit beyond the disk
	Logger     *slog.Logger
	// OnSealed, if set, is called (from a background goroutine) after a file's content is
	// sealed and stored, and after a merge of other devices' roots for every file whose
	// content arrived from them or that the merge removed; the near-duplicate indexer hooks
	// in here (docs/core.md, "Several devices").
	OnSealed func(ino Ino)

	// Added by the core (zero values are sensible defaults):
	CommitDelay    time.Duration // debounce of the background root commit; 0 = 2s
	SealWorkers    int           // background sealers; 0 = 2
	ReadCacheBytes int64         // local cache of sealed objects (ciphertext); 0 = 512 MiB
	BreakLease     bool          // no effect: there is no writer lock any more (docs/core.md, "Several devices")
	// Device names this device in conflict copies and presence records; "" = the host name.
	Device string
	// RefreshInterval: how often a mount polls for the next root of other devices (one
	// HEAD of r/<anchor+1>); 0 = 5s, negative = never (docs/core.md, "Several devices").
	RefreshInterval time.Duration
	// LazyAux names aux tables whose changes join the next root commit that something else
	// starts (a seal, a namespace change, sync, unmount) instead of starting one (lazyaux.go).
	LazyAux []string
	// Plaintext, if set, is offered the plaintext of files as sealing reads them (sealtap.go).
	Plaintext PlaintextObserver
	// CompactDelay: how long after an edit stored as pieces the file is re-chunked
	// (patch.go, docs/core.md "Edits"); 0 = 30s, negative = never.
	CompactDelay time.Duration
}

// Changes is what a merge of other devices' roots changed in the working copy.
type Changes struct {
	Inodes  []Ino   // inodes whose record changed or that went away
	Entries []Entry // directory entries added or removed
}

// Entry is one directory entry name.
type Entry struct {
	Parent Ino
	Name   string
}

// Status is what `imgfs status` prints.
type Status struct {
	Files, Dirs    int64
	LogicalBytes   int64 // sum of file sizes
	StoredBytes    int64 // sum of distinct content object sizes
	ContentObjects int64
	PendingSeals   int64
	PendingUploads int64
	PendingCommit  bool // namespace changed since the last root
}

// Statfs feeds statfs(2).
type Statfs struct {
	Blocks, Bfree, Bavail, Files, Ffree uint64
	Bsize                               uint32
}
