package maint

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// GC protocol (docs/cli.md, "How gc stays safe"; T37 in docs/security-tests.md).
//
//  1. Lock: GC creates LockName with a create-only Put (sealed {owner, time}); a second GC
//     fails with ErrLocked. The caller also holds the vault's writer lease (it opens the
//     namespace as a writer), so no mount commits a root while GC runs.
//  2. Mark: every c/ and m/ object the live set does not reference gets a first-seen time,
//     kept across runs in a sealed state object "gc/pending-<unix nanos>".
//  3. Sweep: an object is deleted only when it was first seen unreferenced at least Grace
//     ago AND is still unreferenced in a live set read again just before deleting. So an
//     object uploaded by a writer that has not committed yet (a crashed mount whose journal
//     will commit it at the next mount, or a writer whose lease expired) survives for Grace
//     after GC first saw it, and never disappears on the run that first notices it unless
//     Grace is zero.
//  4. The new state is written before the old one is removed, and the lock is removed last.
//     A crash anywhere leaves either the old or the new state (marks only restart the
//     grace period) and a stale lock that --break-lock removes.
//
// In group and global convergence modes content objects may be shared with other vaults
// (docs/cli.md, "How gc stays safe"), so GC keeps every c/ object there and collects only m/
// objects.

const (
	// LockName is the store key of the GC lock.
	LockName = "locks/gc"
	// StatePrefix holds the sealed first-seen marks of unreferenced objects.
	StatePrefix = "gc/pending-"

	lockKind  = "gclock"
	stateKind = "gcstate"
)

// ErrLocked: another GC holds the lock.
var ErrLocked = errors.New("another imgfs gc holds the store's gc lock")

// GCOptions tune GC.
type GCOptions struct {
	// Grace is how long an object must have been seen unreferenced before it is deleted.
	Grace time.Duration
	// Live returns the store names the current root references. GC calls it once after
	// taking the lock and once more right before deleting.
	Live func(ctx context.Context) (map[string]bool, error)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Owner describes this process in the lock (host, pid); it is stored encrypted.
	Owner string
	// BreakLock removes an existing lock first (use only when no other gc runs).
	BreakLock bool
	// DryRun marks but deletes nothing.
	DryRun bool
	// Progress is called after each deletion; ListDone with the number of candidates.
	Progress func(n int64)
	ListDone func(candidates int)
}

// GCReport says what GC did.
type GCReport struct {
	Objects       int      // c/ and m/ objects listed
	Unreferenced  int      // of them, not referenced by the live set
	NewlyMarked   int      // first seen unreferenced in this run
	Waiting       int      // unreferenced but still inside the grace period
	Deleted       []string // names deleted
	DeletedBytes  int64
	Rescued       int // candidates referenced again by the second live set
	KeptShared    int // c/ objects kept because the convergence secret is shared
	NextDeletable time.Time
}

// GC deletes the unreferenced objects that have been unreferenced for opts.Grace.
func GC(ctx context.Context, store backend.Store, keys *keyring.Keys, opts GCOptions) (rep *GCReport, err error) {
	if opts.Live == nil {
		return nil, errors.New("maint: GC needs the live set")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Grace < 0 {
		return nil, errors.New("maint: negative grace period")
	}
	if err := lock(ctx, store, keys, opts); err != nil {
		return nil, err
	}
	defer func() {
		if uerr := store.Delete(context.WithoutCancel(ctx), LockName); uerr != nil && !errors.Is(uerr, backend.ErrNotExist) && err == nil {
			err = fmt.Errorf("maint: removing the gc lock: %w", uerr)
		}
	}()

	marks, oldStates, err := loadState(ctx, store, keys)
	if err != nil {
		return nil, err
	}
	live, err := opts.Live(ctx)
	if err != nil {
		return nil, fmt.Errorf("maint: reading the live set: %w", err)
	}
	shared := keys.Mode == keyring.ModeGroup || keys.Mode == keyring.ModeGlobal
	rep = &GCReport{}
	sizes := map[string]int64{}
	now := opts.Now()
	newMarks := map[string]time.Time{}
	var candidates []string
	for _, prefix := range []string{"c/", "m/"} {
		err := store.List(ctx, prefix, func(i backend.Info) error {
			rep.Objects++
			if live[i.Name] {
				return nil
			}
			if !validObjectName(i.Name) {
				return nil // not ours: never delete what we do not understand
			}
			rep.Unreferenced++
			if shared && prefix == "c/" {
				rep.KeptShared++
				return nil
			}
			first, ok := marks[i.Name]
			if !ok || first.After(now) {
				first = now
				rep.NewlyMarked++
			}
			newMarks[i.Name] = first
			sizes[i.Name] = i.Size
			if now.Sub(first) >= opts.Grace {
				candidates = append(candidates, i.Name)
			} else {
				rep.Waiting++
				if t := first.Add(opts.Grace); rep.NextDeletable.IsZero() || t.Before(rep.NextDeletable) {
					rep.NextDeletable = t
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("maint: listing %s: %w", prefix, err)
		}
	}
	sort.Strings(candidates)
	if opts.ListDone != nil {
		opts.ListDone(len(candidates))
	}

	if len(candidates) > 0 && !opts.DryRun {
		// Re-read the root: anything referenced since the first read stays.
		live2, err := opts.Live(ctx)
		if err != nil {
			return nil, fmt.Errorf("maint: re-reading the live set: %w", err)
		}
		for _, name := range candidates {
			if err := ctx.Err(); err != nil {
				_ = saveState(context.WithoutCancel(ctx), store, keys, newMarks, oldStates, now)
				return rep, err
			}
			if live2[name] {
				rep.Rescued++
				delete(newMarks, name)
				continue
			}
			err := store.Delete(ctx, name)
			if err != nil && !errors.Is(err, backend.ErrNotExist) {
				_ = saveState(context.WithoutCancel(ctx), store, keys, newMarks, oldStates, now)
				return rep, fmt.Errorf("maint: deleting %s: %w", name, err)
			}
			delete(newMarks, name)
			rep.Deleted = append(rep.Deleted, name)
			rep.DeletedBytes += sizes[name]
			if opts.Progress != nil {
				opts.Progress(1)
			}
		}
	}
	if err := saveState(ctx, store, keys, newMarks, oldStates, now); err != nil {
		return rep, err
	}
	return rep, nil
}

func validObjectName(name string) bool {
	if strings.HasPrefix(name, "c/") {
		_, err := dedup.ParseContentName(name)
		return err == nil
	}
	_, err := dedup.ParseMetaName(name)
	return err == nil
}

// lock creates LockName; with BreakLock it first removes an existing one.
func lock(ctx context.Context, store backend.Store, keys *keyring.Keys, opts GCOptions) error {
	plain := fmt.Sprintf("%s\n%d\n", opts.Owner, opts.Now().UnixNano())
	obj, _, err := dedup.SealMeta(keys.MetaKey, lockKind, []byte(plain))
	if err != nil {
		return err
	}
	if opts.BreakLock {
		if err := store.Delete(ctx, LockName); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return fmt.Errorf("maint: breaking the gc lock: %w", err)
		}
	}
	err = store.Put(ctx, LockName, bytes.NewReader(obj), int64(len(obj)))
	if err == nil {
		return nil
	}
	if !errors.Is(err, backend.ErrExist) {
		return fmt.Errorf("maint: taking the gc lock: %w", err)
	}
	who := "unknown owner"
	if b, rerr := backend.ReadSmall(ctx, store, LockName, maxMetaObject); rerr == nil {
		if p, oerr := dedup.OpenMeta(keys.MetaKey, lockKind, dedup.Hash(b), b); oerr == nil {
			parts := strings.SplitN(string(p), "\n", 3)
			if len(parts) >= 2 {
				if ns, perr := strconv.ParseInt(parts[1], 10, 64); perr == nil {
					who = fmt.Sprintf("%s since %s", parts[0], time.Unix(0, ns).UTC().Format(time.RFC3339))
				}
			}
		}
	}
	return fmt.Errorf("%w (%s)", ErrLocked, who)
}

// stateName is the store key of a state written at t.
func stateName(t time.Time) string { return fmt.Sprintf("%s%020d", StatePrefix, t.UnixNano()) }

// loadState reads the newest readable state object; it returns the marks and the names of
// all state objects (removed once a new one is written).
func loadState(ctx context.Context, store backend.Store, keys *keyring.Keys) (map[string]time.Time, []string, error) {
	var names []string
	err := store.List(ctx, StatePrefix, func(i backend.Info) error {
		names = append(names, i.Name)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("maint: listing gc state: %w", err)
	}
	sort.Strings(names)
	for k := len(names) - 1; k >= 0; k-- {
		b, err := backend.ReadSmall(ctx, store, names[k], maxMetaObject)
		if err != nil {
			continue
		}
		p, err := dedup.OpenMeta(keys.MetaKey, stateKind, dedup.Hash(b), b)
		if err != nil {
			continue // damaged or foreign: ignore (marks only restart the grace period)
		}
		marks, err := decodeMarks(p)
		if err != nil {
			continue
		}
		return marks, names, nil
	}
	return map[string]time.Time{}, names, nil
}

// saveState writes the marks as a new state object, then removes the old ones.
func saveState(ctx context.Context, store backend.Store, keys *keyring.Keys, marks map[string]time.Time, old []string, now time.Time) error {
	if len(marks) == 0 && len(old) == 0 {
		return nil
	}
	obj, _, err := dedup.SealMeta(keys.MetaKey, stateKind, encodeMarks(marks))
	if err != nil {
		return err
	}
	name := stateName(now)
	for _, o := range old {
		if o >= name { // clock went backwards: stay after the newest existing state
			name = stateName(time.Unix(0, parseStateNanos(o)+1))
		}
	}
	if err := store.Put(ctx, name, bytes.NewReader(obj), int64(len(obj))); err != nil {
		return fmt.Errorf("maint: writing gc state: %w", err)
	}
	for _, o := range old {
		if o != name {
			if err := store.Delete(ctx, o); err != nil && !errors.Is(err, backend.ErrNotExist) {
				return fmt.Errorf("maint: removing old gc state: %w", err)
			}
		}
	}
	return nil
}

func parseStateNanos(name string) int64 {
	n, _ := strconv.ParseInt(strings.TrimPrefix(name, StatePrefix), 10, 64)
	return n
}

// encodeMarks: one line per object, "<unix nanos> <name>", sorted.
func encodeMarks(marks map[string]time.Time) []byte {
	names := make([]string, 0, len(marks))
	for n := range marks {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteString("imgfs gc state v1\n")
	for _, n := range names {
		fmt.Fprintf(&b, "%d %s\n", marks[n].UnixNano(), n)
	}
	return b.Bytes()
}

func decodeMarks(p []byte) (map[string]time.Time, error) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	sc.Buffer(make([]byte, 4096), 4096)
	if !sc.Scan() || sc.Text() != "imgfs gc state v1" {
		return nil, errors.New("maint: not a gc state")
	}
	out := map[string]time.Time{}
	for sc.Scan() {
		ts, name, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			return nil, errors.New("maint: bad gc state line")
		}
		ns, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || !validObjectName(name) {
			return nil, errors.New("maint: bad gc state line")
		}
		out[name] = time.Unix(0, ns)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
