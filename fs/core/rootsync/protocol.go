package rootsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
)

// The root protocol (docs/core.md, "Several devices"). Root n is the store object r/<n>,
// created with a create-only Put; each root names the hash of root n-1 (its predecessor)
// and the cache that wrote it. A device's anchor is the newest root it has seen and merged.
//
//   - Commit: build the next root on top of the anchor, check that every object it newly
//     references is in the store (re-uploading from a local copy when not), create
//     r/<anchor+1>. When that name exists it is either this device's own earlier attempt
//     whose answer was lost (adopted) or another device's root: fetch the newer roots,
//     merge the newest and build again on top of it.
//   - Fetch: read r/<anchor+1>, r/<anchor+2>, ... one name at a time; each must chain to
//     the one before, else rollback.
//   - Refresh: one HEAD of r/<anchor+1>; when it exists, fetch and merge.
//
// Syncer runs it against a backend.Store; the working copy (fs/core) is behind Local.

// Anchor is a root as a device knows it: its sequence number and the hash of its object.
type Anchor struct {
	Seq  uint64
	Hash dedup.Locator
}

// Header is what the protocol reads of a root; the caller decodes the rest.
type Header struct {
	Prev   dedup.Locator // hash of the predecessor's object
	Writer []byte        // id of the cache that wrote it (nil in old roots)
}

// Errors of the protocol (fs/core adds an errno).
var (
	// ErrRollback: the store's roots are older than, or fork from, this device's anchor
	// (docs/core.md "Open", check T15). The message contains "rollback detected".
	ErrRollback = errors.New("rollback detected")
	// ErrConflict: another writer created the root this device wanted to write.
	ErrConflict = errors.New("another writer committed a root concurrently")
	// ErrMissing: an object a new root would reference is gone from the store and no local
	// copy of it is left; the root is not written.
	ErrMissing = errors.New("an object the next root references is missing from the store")
	// ErrLeftOut: Local.Restore found no copy of a missing object and leaves the files that
	// use it out of the next root (at their last root's version); Commit builds the root
	// again.
	ErrLeftOut = errors.New("an object is missing from the store and no local copy is left; the files that use it stay at their last stored version")
)

// Candidate is a root built on top of an anchor, not yet stored.
type Candidate struct {
	Obj []byte // the sealed root object for r/<anchor+1>
	// Refs are the store names of the objects the root references that are new since the
	// anchor (content uploaded since): Commit checks that each is in the store.
	Refs []string
	// Done records the stored root as the new anchor.
	Done func(Anchor) error
}

// Local is the working copy the protocol commits and merges into.
type Local interface {
	// Anchor is the anchor recorded in the working copy.
	Anchor() Anchor
	// Build stores the metadata objects of the working copy's next root and returns it
	// (nil: nothing to commit).
	Build(ctx context.Context, a Anchor) (*Candidate, error)
	// Restore uploads the object name again from a local copy; without one, an error
	// wrapping ErrLeftOut (the next Build leaves out what uses it) or ErrMissing.
	Restore(ctx context.Context, name string) error
	// Merge makes the working copy the 3-way merge of itself with root seq (which chains
	// to the anchor, unless the chain could not be checked) and moves the anchor to seq.
	Merge(ctx context.Context, seq uint64) error
	// Rebuild replaces the working copy with root seq (it holds nothing of its own).
	Rebuild(ctx context.Context, seq uint64) error
	// Adopt moves the anchor to a, a root this cache wrote whose answer was lost or that
	// it wrote before a crash: the working copy already holds what it holds.
	Adopt(a Anchor) error
}

// Syncer runs the protocol for one cache.
type Syncer struct {
	store  backend.Store
	open   func(seq uint64, obj []byte) (Header, error)
	writer []byte
	log    *slog.Logger
	// mu: one commit, fetch or merge at a time.
	mu sync.Mutex

	triesMu sync.Mutex
	tries   rootTry
}

// rootTry: hashes of root objects tried at one sequence number whose Put failed (it may
// have landed with its answer lost).
type rootTry struct {
	seq    uint64
	hashes []dedup.Locator
}

// NewSyncer returns a Syncer for the cache whose id (recorded in the roots it writes) is
// writer (nil: a read-only cache). open decrypts and decodes a root object.
func NewSyncer(store backend.Store, writer []byte, open func(seq uint64, obj []byte) (Header, error), log *slog.Logger) *Syncer {
	if log == nil {
		log = slog.Default()
	}
	return &Syncer{store: store, open: open, writer: writer, log: log}
}

// MaxRootSize bounds a root object.
const MaxRootSize = 16 << 20

// Read returns root seq's stored object and its hash.
func (s *Syncer) Read(ctx context.Context, seq uint64) ([]byte, dedup.Locator, error) {
	obj, err := backend.ReadSmall(ctx, s.store, dedup.RootName(seq), MaxRootSize)
	if err != nil {
		return nil, dedup.Locator{}, fmt.Errorf("reading root %d: %w", seq, err)
	}
	return obj, dedup.Hash(obj), nil
}

func (s *Syncer) header(ctx context.Context, seq uint64) (Header, dedup.Locator, error) {
	obj, h, err := s.Read(ctx, seq)
	if err != nil {
		return Header{}, h, err
	}
	hd, err := s.open(seq, obj)
	if err != nil {
		return Header{}, h, fmt.Errorf("root %d: %w", seq, err)
	}
	return hd, h, nil
}

// Latest returns the highest root sequence number in the store (ok false: none).
func (s *Syncer) Latest(ctx context.Context) (seq uint64, ok bool, err error) {
	err = s.store.List(ctx, "r/", func(info backend.Info) error {
		if n, err := dedup.ParseRootName(info.Name); err == nil && (!ok || n > seq) {
			seq, ok = n, true
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("listing roots: %w", err)
	}
	return seq, ok, nil
}

// Rollback returns an ErrRollback error.
func Rollback(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRollback}, args...)...)
}

// Fetch walks the roots after anchor a one name at a time, checking that each chains to
// the one before, and returns the newest (0: none newer).
func (s *Syncer) Fetch(ctx context.Context, a Anchor) (uint64, error) {
	seq, h := a.Seq, a.Hash
	for {
		hd, rh, err := s.header(ctx, seq+1)
		if errors.Is(err, backend.ErrNotExist) {
			if seq == a.Seq {
				return 0, nil
			}
			return seq, nil
		}
		if err != nil {
			return 0, err
		}
		if seq > 0 {
			if err := CheckLink(seq, h, hd.Prev); err != nil {
				return 0, Rollback("%v", err)
			}
		}
		seq, h = seq+1, rh
	}
}

// catchUp merges the newest of the roots other devices wrote after the anchor (s.mu held).
// Roots right after the anchor that this cache wrote itself (stored, but recording the new
// anchor failed) are adopted first, not merged.
func (s *Syncer) catchUp(ctx context.Context, l Local) error {
	a := l.Anchor()
	newest, err := s.Fetch(ctx, a)
	if err != nil || newest == 0 {
		return err
	}
	if a, err = s.adoptOwn(ctx, l, a, newest); err != nil || a.Seq == newest {
		return err
	}
	return l.Merge(ctx, newest)
}

// commitRounds bounds how often one Commit merges and tries again.
const commitRounds = 10

// Commit stores the working copy as the next root if it changed since the anchor, merging
// the roots other devices got in first.
func (s *Syncer) Commit(ctx context.Context, l Local) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	own, rebuilt := 0, 0
	for round := 0; ; round++ {
		a := l.Anchor()
		c, err := l.Build(ctx, a)
		if err != nil || c == nil {
			return err
		}
		leftOut, err := s.checkRefs(ctx, l, c.Refs)
		if err != nil {
			return err
		}
		if leftOut {
			// The working copy left the files of a lost object out: build again.
			if rebuilt++; rebuilt > commitRounds {
				return fmt.Errorf("%w: the working copy still references it", ErrMissing)
			}
			continue
		}
		seq := a.Seq + 1
		h, err := s.publish(ctx, seq, c.Obj)
		var mine ownRoot
		switch {
		case err == nil:
			return c.Done(Anchor{Seq: seq, Hash: h})
		case errors.As(err, &mine):
			// An earlier attempt of ours landed: continue after it (its content is ours).
			s.log.Warn("rootsync: an earlier root write of this cache landed although its answer was lost; continuing after it", "root", seq)
			if own++; own > 3 {
				return err
			}
			if err := l.Adopt(Anchor{Seq: seq, Hash: mine.hash}); err != nil {
				return err
			}
		case errors.Is(err, ErrConflict) && round < commitRounds:
			// Another device wrote the next root first: merge, then commit on top.
			if err := s.catchUp(ctx, l); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// checkRefs keeps "no root ever references a missing object" (docs/core.md, "Several
// devices"): every object new since the anchor must be in the store, else it is uploaded
// again from a local copy, else the files that use it are left out (leftOut: build the
// root again) or the root is not written.
func (s *Syncer) checkRefs(ctx context.Context, l Local, refs []string) (leftOut bool, err error) {
	const parallel = 8
	errs := make([]error, len(refs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i, name := range refs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := s.store.Stat(ctx, name)
			if errors.Is(err, backend.ErrNotExist) {
				s.log.Warn("rootsync: an object the next root references is missing from the store; uploading it again", "object", name)
				err = l.Restore(ctx, name)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if errors.Is(err, ErrLeftOut) {
			leftOut, errs[i] = true, nil
		}
	}
	return leftOut, errors.Join(errs...)
}

// ownRoot: the root at the sequence number tried is one this cache wrote in an earlier
// attempt whose answer was lost.
type ownRoot struct{ hash dedup.Locator }

func (ownRoot) Error() string { return "own earlier root found" }

// publish creates r/<seq> with obj and returns its hash. ErrExist (create-only) may be our
// own write whose answer was lost: the stored object is read back and compared.
func (s *Syncer) publish(ctx context.Context, seq uint64, obj []byte) (dedup.Locator, error) {
	name := dedup.RootName(seq)
	h := dedup.Hash(obj)
	err := s.store.Put(ctx, name, bytes.NewReader(obj), int64(len(obj)))
	if errors.Is(err, backend.ErrExist) {
		stored, rerr := backend.ReadSmall(ctx, s.store, name, MaxRootSize)
		switch {
		case rerr != nil:
			err = fmt.Errorf("root %d exists but reading it back failed: %w", seq, rerr)
		case bytes.Equal(stored, obj):
			s.log.Info("rootsync: root already stored (a lost answer); accepted after reading it back", "root", seq)
			err = nil
		case s.tried(seq, dedup.Hash(stored)):
			err = ownRoot{hash: dedup.Hash(stored)}
		default:
			err = fmt.Errorf("root %d: %w", seq, ErrConflict)
		}
	}
	switch {
	case err == nil || errors.As(err, new(ownRoot)):
		s.clearTries()
	case !errors.Is(err, ErrConflict):
		s.noteTry(seq, h)
	}
	return h, err
}

func (s *Syncer) tried(seq uint64, h dedup.Locator) bool {
	s.triesMu.Lock()
	defer s.triesMu.Unlock()
	return s.tries.seq == seq && slices.Contains(s.tries.hashes, h)
}

func (s *Syncer) noteTry(seq uint64, h dedup.Locator) {
	s.triesMu.Lock()
	defer s.triesMu.Unlock()
	if s.tries.seq != seq {
		s.tries = rootTry{seq: seq}
	}
	if len(s.tries.hashes) < 64 {
		s.tries.hashes = append(s.tries.hashes, h)
	}
}

func (s *Syncer) clearTries() {
	s.triesMu.Lock()
	defer s.triesMu.Unlock()
	s.tries = rootTry{}
}

// Start brings an existing cache up with the store at open: the store's newest root must
// chain back to the anchor (else rollback); roots after it that this cache wrote itself are
// adopted; then the newest root is loaded (clean: the cache holds nothing that is not in a
// root) or merged.
func (s *Syncer) Start(ctx context.Context, l Local, clean bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := l.Anchor()
	latest, found, err := s.Latest(ctx)
	if err != nil {
		return err
	}
	if a.Seq == 0 { // this cache never committed: nothing to roll back to
		if !found {
			return nil
		}
		return s.bringUp(ctx, l, a, latest, clean)
	}
	if !found {
		return Rollback("the store has no root, this cache saw root %d", a.Seq)
	}
	if latest < a.Seq {
		return Rollback("the store's newest root is %d, this cache saw root %d", latest, a.Seq)
	}
	// Walk back from the newest root to the anchor: every prev hash must chain to it.
	var want dedup.Locator
	for seq := latest; ; seq-- {
		hd, h, err := s.header(ctx, seq)
		if errors.Is(err, backend.ErrNotExist) && seq > a.Seq && seq < latest && clean {
			// gc collected the roots between (docs/cli.md, gc: it keeps every root from the
			// oldest presence record's anchor; a read-only cache has none). The chain cannot
			// be checked any more; a cache with nothing of its own loads the newest root.
			s.log.Warn("rootsync: roots between this cache's last root and the newest were removed by gc; loading the newest root without checking the chain to it",
				"cache_root", a.Seq, "newest", latest)
			return l.Rebuild(ctx, latest)
		}
		if err != nil {
			return err
		}
		if seq != latest && h != want {
			return Rollback("root %d does not chain to root %d", seq, seq+1)
		}
		if seq == a.Seq {
			if h != a.Hash {
				return Rollback("root %d differs from the one this cache saw (fork)", seq)
			}
			break
		}
		want = hd.Prev
	}
	return s.bringUp(ctx, l, a, latest, clean)
}

// bringUp adopts this cache's own roots after the anchor, then loads or merges latest.
func (s *Syncer) bringUp(ctx context.Context, l Local, a Anchor, latest uint64, clean bool) error {
	a, err := s.adoptOwn(ctx, l, a, latest)
	if err != nil || a.Seq == latest {
		return err
	}
	if clean {
		return l.Rebuild(ctx, latest)
	}
	return l.Merge(ctx, latest)
}

// adoptOwn moves the anchor over the roots after it that this cache wrote itself: a kill -9
// after a root's Put but before the anchor update reached the working copy leaves them
// unknown to it. The working copy already holds what they hold, so this is the lost-answer
// case of publish across a restart; merging with them would make conflict copies of the
// device's own files.
func (s *Syncer) adoptOwn(ctx context.Context, l Local, a Anchor, latest uint64) (Anchor, error) {
	for len(s.writer) > 0 && a.Seq < latest {
		hd, h, err := s.header(ctx, a.Seq+1)
		if errors.Is(err, backend.ErrNotExist) {
			break // collected by gc: not one to continue after
		}
		if err != nil {
			return a, err
		}
		if !bytes.Equal(hd.Writer, s.writer) {
			break
		}
		next := Anchor{Seq: a.Seq + 1, Hash: h}
		if err := l.Adopt(next); err != nil {
			return a, err
		}
		a = next
		s.log.Warn("rootsync: a root this cache wrote before it stopped was not recorded in its working copy; continuing after it", "root", a.Seq)
	}
	return a, nil
}

// Refresh merges the roots other devices wrote after the anchor, if any: one HEAD of the
// next root name when there are none. An unreachable store is not an error (the device
// works offline and merges when the store returns). checkAnchor also looks for the anchor
// root itself when there is nothing newer: a read-only cache has no presence record, so gc
// may collect its anchor and the next root name with it (docs/cli.md, gc); then the newest
// root is merged without the chain check (a warning).
func (s *Syncer) Refresh(ctx context.Context, l Local, checkAnchor bool) error {
	a := l.Anchor()
	_, err := s.store.Stat(ctx, dedup.RootName(a.Seq+1))
	switch {
	case err == nil:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.catchUp(ctx, l)
	case Offline(err):
		return nil
	case !errors.Is(err, backend.ErrNotExist):
		return fmt.Errorf("polling for new roots: %w", err)
	case !checkAnchor || a.Seq == 0:
		return nil
	}
	if _, err := s.store.Stat(ctx, dedup.RootName(a.Seq)); !errors.Is(err, backend.ErrNotExist) {
		return nil
	}
	newest, found, err := s.Latest(ctx)
	if err != nil || !found || newest <= a.Seq {
		return err
	}
	s.log.Warn("rootsync: gc removed the roots after this cache's last root; merging the newest without checking the chain to it",
		"cache_root", a.Seq, "newest", newest)
	s.mu.Lock()
	defer s.mu.Unlock()
	return l.Merge(ctx, newest)
}

// Poll runs Refresh every interval until ctx ends; every checkAnchorEvery-th poll (0:
// never) checks the anchor too. A failure is logged once until it changes.
func (s *Syncer) Poll(ctx context.Context, l Local, every time.Duration, checkAnchorEvery int) {
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr string
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.Refresh(ctx, l, checkAnchorEvery > 0 && tick%checkAnchorEvery == 0)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if err != nil && ctx.Err() == nil && msg != lastErr {
			s.log.Warn("rootsync: merging other devices' roots failed; will retry", "err", err)
		}
		lastErr = msg
	}
}

// Offline reports whether a store error may go away by itself (the store is unreachable or
// busy): the device keeps working from its cache.
func Offline(err error) bool {
	if err == nil || errors.Is(err, backend.ErrExist) || errors.Is(err, backend.ErrNotExist) ||
		errors.Is(err, context.Canceled) || backend.IsPermanent(err) {
		return false
	}
	if backend.IsTransient(err) || backend.IsNetwork(err) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error // a client timeout (url.Error) is no *net.OpError
	return errors.As(err, &ne) && ne.Timeout()
}
