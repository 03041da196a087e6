package core

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/fs/core/rootsync"
)

// bbolt buckets of the working copy.
var (
	bMeta    = []byte("meta")    // counters and anchors, plain (no user data)
	bInodes  = []byte("inodes")  // u64be(ino) -> sealed inode record
	bDirents = []byte("dirents") // u64be(parent) || nameHash -> sealed {name, ino, type}
	bXattrs  = []byte("xattrs")  // u64be(ino) || nameHash -> sealed {name, value}
	bPending = []byte("pending") // u64be(spool id) -> journal record (plain: ino, size)
	bOrphans = []byte("orphans") // u64be(ino) -> "" : unlinked while open
	bAux     = []byte("aux")     // nested bucket per table: nameHash(key) -> sealed {key, value}
)

// meta keys
const (
	mInit       = "init"
	mNextIno    = "nextIno"
	mNextSpool  = "nextSpool"
	mAnchorSeq  = "anchorSeq"
	mAnchorHash = "anchorHash"
	mChg        = "chg"          // bumped by every namespace change
	mCommitted  = "committedChg" // chg captured by the last root written
	mLease      = "lease"
	mVault      = "vault"     // the vault id this cache belongs to
	mAuxLoc     = "auxloc:"   // + table: locator of its last committed object
	mAuxDirty   = "auxdirty:" // + table: changed since then
	mShLoc      = "shloc:"    // + u64be(shard): locator of its last committed tree object
	mShDirty    = "shdirty:"  // + u64be(shard): changed since then
)

// FS is an opened vault namespace.
type FS struct {
	store backend.Store
	keys  *keyring.Keys
	opts  Options
	log   *slog.Logger
	lc    *localCrypto
	db    *bolt.DB
	dir   string
	ro    bool

	// mu serialises namespace changes and guards open. Lock order: openFile.mu, then mu.
	mu     sync.Mutex
	open   map[Ino]*openFile
	wtx    *bolt.Tx // shared write transaction (batch.go), nil when none is open
	wtxOps int
	jr     *journal      // redo journal of the batch (journal.go); nil for a read-only open
	window time.Duration // group-commit window (batchDelay)
	// unsynced: spools that journal records of the batch point at, not yet fsynced
	unsynced map[uint64]bool
	closed   bool

	// Under mu: files whose current content no one acknowledged yet (unacked.go), and the
	// decoded tree objects of the last root's shards they are written from (a few).
	holds      map[Ino]*hold
	priorTrees map[dedup.Locator]map[Ino]*inode
	// broken: objects missing from the store with no local copy, found by the current
	// commit; leftOut: the files it left at their last root's version (workcopy.go Restore);
	// commitGen counts commitNow calls, leftOutGen is the one whose build found leftOut.
	commitMu   sync.Mutex // one commitNow at a time (its left-out report is its own)
	broken     map[dedup.Locator]bool
	leftOut    map[Ino]bool
	leftOutMsg []string
	commitGen  uint64
	leftOutGen uint64

	spoolUsed atomic.Int64  // bytes of spool files on disk
	spoolSeq  atomic.Uint64 // last spool id handed out
	pool      chan pooled   // pre-created spool files (pool.go)
	poolKick  chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sealMu     sync.Mutex
	sealQ      []uint64
	queued     map[uint64]bool
	sealing    map[uint64]chan struct{} // in flight; closed when done
	sealStop   map[uint64]func()        // cancels the seal in flight of a spool (removeSpool)
	sealKick   chan struct{}
	uploading  atomic.Int64
	commitKick chan struct{}
	// sync runs the root protocol (commit, fetch, merge, refresh) for this cache
	sync *rootsync.Syncer

	cacheMu  sync.Mutex
	fetching map[dedup.Locator]chan struct{}

	storePath func(name string) (string, error) // set for a local directory store
	// frozen: a read-only open of a cache with work not yet in the store; its bbolt is
	// opened read-only and nothing in the cache is touched (docs/core.md, "Several devices").
	frozen  bool
	onMerge atomic.Pointer[func(Changes)]
	// presenceAnchor: the anchor in the last presence record written (presence.go)
	presenceAnchor atomic.Uint64
	// writerID: this cache's presence id, recorded in the roots it writes (rootRec.Writer)
	writerID  []byte
	closeOnce sync.Once

	// chunker cuts file content into chunks (format v2, docs/format.md §11)
	chunker *dedup.Chunker

	// scratchDir: a read-only open of a cache without work of its own runs on a copy of its
	// bbolt in this directory; lockDB is the cache's own bbolt, open and unwritten (scratch)
	scratchDir string
	lockDB     *bolt.DB
	// cmp: files whose chunk lists hold pieces, to be compacted (patch.go)
	cmp compactor
	// dur: chunks stored unsynced and the swaps that wait for the store's sync (durable.go)
	dur durable
}

func (f *FS) spoolPath(id uint64) string {
	return filepath.Join(f.dir, "spool", strconv.FormatUint(id, 10))
}

func (f *FS) objPath(l dedup.Locator) string { return filepath.Join(f.dir, "obj", l.String()) }

// Open opens (or, for a new vault, initialises) the namespace, replays the journal and
// resumes pending seals and uploads. It refuses a root older than the last one this cache saw.
func Open(ctx context.Context, store backend.Store, keys *keyring.Keys, opts Options) (*FS, error) {
	if opts.CacheDir == "" {
		return nil, errnoErr(syscall.EINVAL, "Options.CacheDir is required")
	}
	if keys == nil || len(keys.LocalKey) != 32 || len(keys.MetaKey) != 32 || len(keys.ConvergenceSecret) != 32 {
		return nil, errnoErr(syscall.EINVAL, "incomplete keys")
	}
	if opts.CommitDelay <= 0 {
		opts.CommitDelay = 2 * time.Second
	}
	if opts.SealWorkers <= 0 {
		opts.SealWorkers = 2
	}
	if opts.ReadCacheBytes <= 0 {
		opts.ReadCacheBytes = 512 << 20
	}
	// A cache of keys a rekey replaced is rebuilt or refused (keygen.go).
	if err := checkKeyGeneration(opts.CacheDir, keys.Generation, opts.ReadOnly, opts.Logger); err != nil {
		return nil, err
	}
	f := &FS{store: store, keys: keys, opts: opts, log: opts.Logger, dir: opts.CacheDir, ro: opts.ReadOnly,
		lc: newLocalCrypto(keys.LocalKey), open: map[Ino]*openFile{}, queued: map[uint64]bool{},
		sealing: map[uint64]chan struct{}{}, sealStop: map[uint64]func(){}, sealKick: make(chan struct{}, 1), commitKick: make(chan struct{}, 1),
		pool: make(chan pooled, poolSize), poolKick: make(chan struct{}, 1),
		fetching: map[dedup.Locator]chan struct{}{}, window: batchDelay,
		cmp: compactor{due: map[Ino]time.Time{}, kick: make(chan struct{}, 1)}}
	if f.log == nil {
		f.log = slog.Default()
	}
	var err error
	if f.chunker, err = dedup.NewChunker(keys.ConvergenceSecret); err != nil {
		return nil, errnoErr(syscall.EINVAL, "chunker: %v", err)
	}
	if ls, ok := store.(backend.LocalPather); ok {
		f.storePath = ls.Path
	}
	f.initDurable()
	for _, d := range []string{"", "spool", "obj", "tmp"} {
		p := filepath.Join(f.dir, d)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, localErr("creating cache directory", err)
		}
		if err := os.Chmod(p, 0o700); err != nil {
			return nil, localErr("cache directory", err)
		}
	}
	db, err := bolt.Open(filepath.Join(f.dir, "state.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, errnoErr(syscall.EBUSY, "cache directory %s is in use by another imgfs process", f.dir)
	}
	if err != nil {
		return nil, localErr("opening local state", err)
	}
	f.db = db
	f.sync = rootsync.NewSyncer(store, nil, f.rootHeader, f.log)
	if err := f.start(ctx); err != nil {
		if f.jr != nil {
			f.jr.f.Close()
		}
		f.db.Close()
		f.closeScratch()
		return nil, err
	}
	return f, nil
}

// localWork says what work of its own a cache holds that is not in the store yet ("": none).
func (f *FS) localWork() string {
	why := ""
	f.db.View(func(tx *bolt.Tx) error {
		why = localWorkTx(tx)
		if st, err := os.Stat(filepath.Join(f.dir, journalFile)); why == "" && err == nil && st.Size() > 0 {
			why = "changes in the journal not yet committed"
		}
		return nil
	})
	return why
}

// localWorkTx is localWork inside a transaction; it reads only unsealed counters and
// bucket sizes, so it needs no key (keygen.go uses it on a cache of older keys).
func localWorkTx(tx *bolt.Tx) string {
	switch {
	case tx.Bucket(bMeta).Get([]byte(mInit)) == nil:
	case tx.Bucket(bPending).Stats().KeyN > 0:
		return fmt.Sprintf("%d file version(s) not yet stored", tx.Bucket(bPending).Stats().KeyN)
	case getU64(tx, mChg) != getU64(tx, mCommitted) &&
		(getU64(tx, mAnchorSeq) != 0 || tx.Bucket(bInodes).Stats().KeyN > 1): // not just an empty new tree
		return "changes not yet in a root"
	case tx.Bucket(bOrphans).Stats().KeyN > 0:
		return "files deleted while open, not yet cleaned up"
	}
	return ""
}

// scratch moves a read-only open of a cache without work of its own onto a private copy
// of its bbolt in the system's temporary directory (sealed values, like the cache): the
// newest root is loaded into the copy, and later refreshes merged into it, so the cache
// itself is never written (docs/core.md, "Open"). The cache's own bbolt stays open
// unwritten, which keeps its lock; the copy is deleted at Close.
func (f *FS) scratch() error {
	dir, err := os.MkdirTemp("", "imgfs-ro-")
	if err != nil {
		return localErr("creating a scratch copy of the local state", err)
	}
	p := filepath.Join(dir, "state.db")
	err = func() error {
		out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		err = f.db.View(func(tx *bolt.Tx) error {
			_, err := tx.WriteTo(out)
			return err
		})
		return errors.Join(err, out.Close())
	}()
	var db *bolt.DB
	if err == nil {
		db, err = bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	}
	if err != nil {
		os.RemoveAll(dir)
		return localErr("creating a scratch copy of the local state", err)
	}
	f.lockDB, f.db, f.scratchDir = f.db, db, dir
	return nil
}

// closeScratch closes the cache's own bbolt and deletes the scratch copy of a read-only
// open (after f.db is closed).
func (f *FS) closeScratch() error {
	if f.scratchDir == "" {
		return nil
	}
	err := f.lockDB.Close()
	return errors.Join(err, os.RemoveAll(f.scratchDir))
}

// freeze reopens the cache's bbolt read-only for a read-only open of a cache with local
// work: the cache is shown as it is (its own unsynced files included; newer roots of other
// devices are not merged) and nothing in it changes.
func (f *FS) freeze(why string) error {
	f.log.Warn("core: this cache holds work that is not in the store yet; the read-only open shows the cache as it is and changes nothing in it (mount it as a writer, or run a writer command, to store it and see newer changes)",
		"cache", f.dir, "work", why)
	path := f.db.Path()
	if st, err := os.Stat(filepath.Join(f.dir, journalFile)); err == nil && st.Size() > 0 {
		// The journal holds changes since the last batch commit: they are applied in a
		// write transaction that is read from and never committed (the db stays open
		// read-write, which writes nothing to an existing db file).
		f.frozen = true
		f.ctx, f.cancel = context.WithCancel(context.Background())
		return f.overlayJournal()
	}
	if err := f.db.Close(); err != nil {
		return localErr("local state", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return localErr("opening local state read-only", err)
	}
	f.db, f.frozen = db, true
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return nil
}

func (f *FS) start(ctx context.Context) error {
	otherVault, inited := false, false
	f.db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bMeta); m != nil {
			v := m.Get([]byte(mVault))
			otherVault = v != nil && string(v) != string(f.keys.VaultID[:])
			inited = m.Get([]byte(mInit)) != nil
		}
		return nil
	})
	if otherVault {
		return errnoErr(syscall.EINVAL, "cache directory %s belongs to another vault; use another --cache directory", f.dir)
	}
	if f.ro && inited {
		// Before any write: a read-only open must not touch a cache with work of its own,
		// and works on a private copy of one without.
		if why := f.localWork(); why != "" {
			return f.freeze(why)
		}
		if err := f.scratch(); err != nil {
			return err
		}
	}
	err := f.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bInodes, bDirents, bXattrs, bPending, bOrphans, bAux} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		if v := m.Get([]byte(mVault)); v != nil {
			otherVault = string(v) != string(f.keys.VaultID[:])
			return nil
		}
		return m.Put([]byte(mVault), f.keys.VaultID[:])
	})
	if err != nil {
		return localErr("initialising local state", err)
	}
	if otherVault {
		return errnoErr(syscall.EINVAL, "cache directory %s belongs to another vault; use another --cache directory", f.dir)
	}
	if !f.ro {
		// Before anything reads or changes the working copy: what close(2) and the other
		// operations acknowledged since the last batch commit (kill -9, power loss).
		if err := f.replayJournal(); err != nil {
			return err
		}
		if f.writerID, err = f.deviceID(); err != nil {
			return err
		}
		f.sync = rootsync.NewSyncer(f.store, f.writerID, f.rootHeader, f.log)
	}
	if err := f.syncWithStore(ctx); err != nil {
		if !inited || !rootsync.Offline(err) || errors.Is(err, ErrRollback) {
			return err
		}
		// Offline (docs/core.md, "Several devices"): the cache works on its own; the
		// refresher merges and the committer commits when the store is back.
		f.log.Warn("core: the store is unreachable; working offline from the cache (changes are merged and stored when it is back)", "err", err)
	}
	if !f.ro {
		// A read-only open deletes nothing: stray spool files wait for the next writer.
		if err := f.recover(); err != nil {
			return err
		}
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	if !f.ro && f.anchorSeq() == 0 {
		// A new vault: write r/1 now, so a second client never starts another one.
		if err := f.commitNow(ctx); err != nil {
			return err
		}
	}
	if !f.ro {
		f.writePresence(ctx, true)
		procsForBackground(f.opts.SealWorkers + 1) // the sealers and the pool filler
		for i := 0; i < f.opts.SealWorkers; i++ {
			f.wg.Add(1)
			go f.sealWorker()
		}
		f.wg.Add(3)
		go f.committer()
		go f.poolFiller()
		go f.compactLoop()
		f.scheduleMarked()
		if f.dur.store != nil {
			f.wg.Add(1)
			go f.durableFlusher()
		}
		f.kickCommit()
		f.kickPool()
	}
	if f.opts.RefreshInterval >= 0 {
		f.wg.Add(1)
		go f.refresher()
	}
	return nil
}

// Close stops background work after persisting its state; pending work resumes at next Open.
// It flushes open files that still hold unflushed writes and, when the namespace changed,
// tries one last root commit (bounded by 30 s).
func (f *FS) Close() error {
	var errs []error
	f.closeOnce.Do(func() {
		f.mu.Lock()
		ofs := make([]*openFile, 0, len(f.open))
		for _, of := range f.open {
			ofs = append(ofs, of)
		}
		f.mu.Unlock()
		for _, of := range ofs {
			if err := f.flushOpen(of); err != nil {
				errs = append(errs, err)
			}
		}
		if f.cancel != nil {
			f.cancel()
		}
		f.wg.Wait()
		f.drainPool()
		if !f.ro {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := f.flushDeferred(ctx); err != nil { // else they are sealed again at the next Open
				f.log.Warn("core: syncing the store at close failed", "err", err)
			}
			cancel()
		}
		f.mu.Lock()
		if f.frozen && f.wtx != nil {
			f.wtx.Rollback() // the journal overlay of a read-only open (freeze)
			f.wtx = nil
		}
		if !f.ro {
			if err := f.dropUnlinkedOpenLocked(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := f.commitLocked(); err != nil {
			errs = append(errs, err)
		}
		f.mu.Unlock()
		if !f.ro && f.pendingCommit() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := f.commitNow(ctx); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		if !f.ro {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			f.writePresence(ctx, f.localWork() != "")
			cancel()
		}
		f.mu.Lock()
		if err := f.commitLocked(); err != nil {
			errs = append(errs, err)
		}
		f.closed = true
		for _, of := range f.open {
			of.closeFiles()
		}
		if f.jr != nil {
			f.jr.f.Close()
		}
		f.mu.Unlock()
		if err := f.db.Close(); err != nil {
			errs = append(errs, localErr("closing local state", err))
		}
		if err := f.closeScratch(); err != nil {
			errs = append(errs, localErr("closing local state", err))
		}
	})
	return errors.Join(errs...)
}

// dropUnlinkedOpenLocked deletes the files that are unlinked and still open at Close, as
// their last release would have (f.mu held). At an unmount the kernel aborts the RELEASE
// requests still queued, so a file removed while open and closed just before the unmount
// would stay an orphan, and the presence record would say "unsynced" until the next
// mount (gc refused after clean unmounts, docs/testing.md).
func (f *FS) dropUnlinkedOpenLocked() error {
	for ino, of := range f.open {
		if !of.isUnlinked() {
			continue
		}
		err := f.writeLocked(func(tx *bolt.Tx) error {
			n, err := f.getInode(tx, ino)
			if err != nil || n.Nlink > 0 {
				return nil
			}
			return f.deleteInode(tx, ino, &n)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// crash simulates kill -9 for tests: background work stops, nothing is flushed or
// committed, and the db is closed without any further write.
func (f *FS) crash() {
	f.closeOnce.Do(func() {
		f.cancel()
		f.wg.Wait()
		f.mu.Lock()
		if f.wtx != nil {
			// What a kill -9 loses: the batch since the last commit, which the journal
			// holds up to the last operation that returned.
			txJournals.Delete(f.wtx)
			f.wtx.Rollback()
			f.wtx = nil
		}
		if f.jr != nil {
			f.jr.f.Close()
		}
		f.closed = true
		for _, of := range f.open {
			of.closeFiles()
		}
		f.mu.Unlock()
		f.db.Close()
		f.closeScratch()
	})
}

// ---- meta helpers ----

func getU64(tx *bolt.Tx, key string) uint64 {
	v := tx.Bucket(bMeta).Get([]byte(key))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putU64(tx *bolt.Tx, key string, v uint64) error {
	return bput(tx, bMeta, []byte(key), be64(v))
}

// change marks the namespace changed (a root commit is due) inside a write tx.
func change(tx *bolt.Tx) error { return putU64(tx, mChg, getU64(tx, mChg)+1) }

func (f *FS) anchorSeq() uint64 {
	var s uint64
	f.view(func(tx *bolt.Tx) error {
		s = getU64(tx, mAnchorSeq)
		return nil
	})
	return s
}

func (f *FS) pendingCommit() bool {
	var p bool
	f.view(func(tx *bolt.Tx) error {
		p = getU64(tx, mChg) != getU64(tx, mCommitted)
		return nil
	})
	return p
}

func (f *FS) getInode(tx *bolt.Tx, ino Ino) (inode, error) {
	k := be64(uint64(ino))
	v := tx.Bucket(bInodes).Get(k)
	if v == nil {
		return inode{}, errnoErr(syscall.ENOENT, "inode %d", ino)
	}
	p, err := f.lc.open("inodes", k, v)
	if err != nil {
		return inode{}, errnoErr(syscall.EIO, "inode %d: %v", ino, err)
	}
	n, err := decodeInodeRecord(p)
	if err != nil {
		return inode{}, errnoErr(syscall.EIO, "inode %d: %v", ino, err)
	}
	return n, nil
}

func (f *FS) putInode(tx *bolt.Tx, ino Ino, n *inode) error {
	k := be64(uint64(ino))
	if err := markShard(tx, ino); err != nil {
		return err
	}
	return bput(tx, bInodes, k, f.lc.seal("inodes", k, encodeInodeRecord(n)))
}

// markShard records that ino's tree shard changed (compared with the chg captured by the
// next commit, like aux tables).
func markShard(tx *bolt.Tx, ino Ino) error {
	return bput(tx, bMeta, shardKey(mShDirty, uint64(ino)/shardSize), be64(getU64(tx, mChg)+1))
}

func shardKey(prefix string, shard uint64) []byte { return append([]byte(prefix), be64(shard)...) }

type dirent struct {
	Name string
	Ino  Ino
	Mode os.FileMode // type bits
}

func encodeDirent(d dirent) []byte {
	var e encoder
	e.str(d.Name)
	e.u(uint64(d.Ino))
	e.u(uint64(d.Mode.Type()))
	return e.b
}

func decodeDirent(b []byte) (dirent, error) {
	d := decoder{b: b}
	de := dirent{Name: d.str(maxNameLen), Ino: Ino(d.u()), Mode: os.FileMode(d.u32())}
	return de, d.end()
}

// lookupDirent is getDirent where a missing name is ENOENT.
func (f *FS) lookupDirent(tx *bolt.Tx, parent Ino, name string) (dirent, error) {
	de, ok, err := f.getDirent(tx, parent, name)
	if err == nil && !ok {
		err = errnoErr(syscall.ENOENT, "%q not found", name)
	}
	return de, err
}

func (f *FS) getDirent(tx *bolt.Tx, parent Ino, name string) (dirent, bool, error) {
	k := f.lc.direntKey(parent, name)
	v := tx.Bucket(bDirents).Get(k)
	if v == nil {
		return dirent{}, false, nil
	}
	p, err := f.lc.open("dirents", k, v)
	if err != nil {
		return dirent{}, false, errnoErr(syscall.EIO, "directory entry: %v", err)
	}
	de, err := decodeDirent(p)
	if err != nil {
		return dirent{}, false, errnoErr(syscall.EIO, "directory entry: %v", err)
	}
	return de, true, nil
}

func (f *FS) putDirent(tx *bolt.Tx, parent Ino, de dirent) error {
	if err := markShard(tx, de.Ino); err != nil {
		return err
	}
	k := f.lc.direntKey(parent, de.Name)
	return bput(tx, bDirents, k, f.lc.seal("dirents", k, encodeDirent(de)))
}

// putDirentsSorted stores the entries of a tree loaded from the store in key order: keys are
// keyed name hashes, and bbolt inserting them in random order splits pages all over the
// bucket (docs/scale.md). Their shards are marked dirty by their inodes' putInode already.
func (f *FS) putDirentsSorted(tx *bolt.Tx, ds []treeDirent, types map[Ino]os.FileMode) error {
	kvs := make([][2][]byte, 0, len(ds))
	for _, d := range ds {
		typ, ok := types[d.Ino]
		if !ok {
			return errnoErr(syscall.ENOENT, "inode %d", d.Ino)
		}
		k := f.lc.direntKey(d.Parent, d.Name)
		kvs = append(kvs, [2][]byte{k, f.lc.seal("dirents", k, encodeDirent(dirent{Name: d.Name, Ino: d.Ino, Mode: typ}))})
	}
	sort.Slice(kvs, func(i, j int) bool { return bytes.Compare(kvs[i][0], kvs[j][0]) < 0 })
	for _, kv := range kvs {
		if err := bput(tx, bDirents, kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

func (f *FS) delDirent(tx *bolt.Tx, parent Ino, name string, child Ino) error {
	if err := markShard(tx, child); err != nil {
		return err
	}
	return bdel(tx, bDirents, f.lc.direntKey(parent, name))
}

// openDirent decrypts and decodes the directory entry stored at key k.
func (f *FS) openDirent(k, v []byte) (dirent, error) {
	p, err := f.lc.open("dirents", k, v)
	if err != nil {
		return dirent{}, errnoErr(syscall.EIO, "directory entry: %v", err)
	}
	de, err := decodeDirent(p)
	if err != nil {
		return dirent{}, errnoErr(syscall.EIO, "directory entry: %v", err)
	}
	return de, nil
}

// forDirents calls fn for every entry of directory parent.
func (f *FS) forDirents(tx *bolt.Tx, parent Ino, fn func(dirent) error) error {
	c := tx.Bucket(bDirents).Cursor()
	pre := be64(uint64(parent))
	for k, v := c.Seek(pre); k != nil && len(k) >= 8 && string(k[:8]) == string(pre); k, v = c.Next() {
		de, err := f.openDirent(k, v)
		if err != nil {
			return err
		}
		if err := fn(de); err != nil {
			return err
		}
	}
	return nil
}

func (f *FS) nextID(tx *bolt.Tx, key string) (uint64, error) {
	v := getU64(tx, key) + 1
	return v, putU64(tx, key, v)
}

func (f *FS) kickCommit() {
	select {
	case f.commitKick <- struct{}{}:
	default:
	}
}

func (f *FS) rofs() error { return errnoErr(syscall.EROFS, "read-only mount") }

func nowNs() int64 { return time.Now().UnixNano() }

var _ = fmt.Sprint
