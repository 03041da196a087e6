// Package maint holds the store maintenance of imgfs: Check (verify every object and every
// reference), Repair (restore damaged content objects from good copies) and GC (delete
// unreferenced objects, safely against concurrent writers).
//
// Neither needs FUSE or the namespace code itself: the caller passes the live set (the
// store names the current root references, fs/core.FS.ReferencedObjects) and, for a data
// check, a function that decrypts every file.
package maint

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// Problem kinds.
const (
	Corrupt    = "corrupt"    // bytes do not hash to the object's name, or do not decrypt
	Missing    = "missing"    // referenced by the current root but absent from the store
	Unreadable = "unreadable" // the store returned an error other than not-exist
	BadName    = "bad-name"   // an object under c/, m/, r/ or k/ whose name is malformed
)

// Problem is one finding of Check.
type Problem struct {
	Kind   string
	Name   string // store name ("" for a file-level data problem, then Detail names the file)
	Detail string
}

func (p Problem) String() string {
	if p.Detail == "" {
		return p.Kind + " " + p.Name
	}
	if p.Name == "" {
		return p.Kind + ": " + p.Detail
	}
	return p.Kind + " " + p.Name + ": " + p.Detail
}

// Report is the result of Check.
type Report struct {
	Objects        int   // all objects listed
	Bytes          int64 // their total size
	ContentObjects int
	MetaObjects    int
	Roots          int
	KeySlots       int
	Other          int // vault header, locks, gc state and unknown names

	Referenced   int            // size of the live set
	Unreferenced []string       // c/ and m/ objects the live set does not reference (gc collects them)
	Refs         map[string]int // content object -> number of files referencing it (when given)
	DataFiles    int            // files decrypted (ReadData)
	DataBytes    int64          // plaintext bytes decrypted
	Problems     []Problem
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// CheckOptions tune Check.
type CheckOptions struct {
	// Live is the set of store names the current root references (required).
	Live map[string]bool
	// Refs, if set, counts the files referencing each content object; it is copied into
	// the report, and every name in it must exist like those of Live.
	Refs map[string]int
	// ReadData, if set, decrypts every file; it calls problem for each file that fails
	// and data for the plaintext bytes it read. Check adds what it reports.
	ReadData func(ctx context.Context, data func(n int64), problem func(path string, err error)) error
	// Workers hash objects in parallel (default 4).
	Workers int
	// Progress is called with the number of stored bytes hashed so far (increments).
	Progress func(n int64)
	// ListDone is called once the listing is known, with the total bytes to hash.
	ListDone func(objects int, bytes int64)
}

// Check lists every object in the store, verifies that each content, metadata and key-slot
// object hashes to its name, that the newest root pointer decrypts under keys, that every
// name of the live set exists, and (ReadData) that every file decrypts. Findings are in
// the report; the error is for failures that stopped the check.
func Check(ctx context.Context, store backend.Store, keys *keyring.Keys, opts CheckOptions) (*Report, error) {
	if opts.Live == nil {
		return nil, errors.New("maint: Check needs the live set")
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	rep := &Report{Referenced: len(opts.Live), Refs: opts.Refs}
	var mu sync.Mutex
	addProblem := func(p Problem) {
		mu.Lock()
		rep.Problems = append(rep.Problems, p)
		mu.Unlock()
	}

	var toHash []backend.Info
	present := map[string]bool{}
	var newestRoot uint64
	haveRoot := false
	err := store.List(ctx, "", func(i backend.Info) error {
		present[i.Name] = true
		rep.Objects++
		rep.Bytes += i.Size
		switch {
		case strings.HasPrefix(i.Name, "c/"):
			rep.ContentObjects++
			toHash = append(toHash, i)
		case strings.HasPrefix(i.Name, "m/"):
			rep.MetaObjects++
			toHash = append(toHash, i)
		case strings.HasPrefix(i.Name, keyring.SlotPrefix):
			rep.KeySlots++
			toHash = append(toHash, i)
		case strings.HasPrefix(i.Name, "r/"):
			rep.Roots++
			seq, err := dedup.ParseRootName(i.Name)
			if err != nil {
				addProblem(Problem{Kind: BadName, Name: i.Name, Detail: "not a root pointer name"})
				return nil
			}
			if !haveRoot || seq > newestRoot {
				newestRoot, haveRoot = seq, true
			}
		default:
			rep.Other++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("maint: listing the store: %w", err)
	}
	if opts.ListDone != nil {
		var total int64
		for _, i := range toHash {
			total += i.Size
		}
		opts.ListDone(len(toHash), total)
	}

	// Hash every self-certifying object in parallel.
	work := make(chan backend.Info)
	var wg sync.WaitGroup
	for w := 0; w < opts.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for i := range work {
				if p, ok := verifyObject(ctx, store, i, buf, opts.Progress); !ok {
					addProblem(p)
				}
			}
		}()
	}
feed:
	for _, i := range toHash {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// The newest root must decrypt under this vault's metadata key.
	if haveRoot && keys != nil {
		name := dedup.RootName(newestRoot)
		obj, err := backend.ReadSmall(ctx, store, name, maxMetaObject)
		if err != nil && !errors.Is(err, backend.ErrTooLarge) { // too large: does not decrypt
			addProblem(Problem{Kind: Unreadable, Name: name, Detail: err.Error()})
		} else if _, err := dedup.OpenRoot(keys.MetaKey, newestRoot, obj); err != nil {
			addProblem(Problem{Kind: Corrupt, Name: name, Detail: "root pointer does not decrypt"})
		}
	}

	// Every reference resolves.
	for name := range opts.Live {
		if !present[name] {
			addProblem(Problem{Kind: Missing, Name: name, Detail: "referenced by the current root"})
		}
	}
	for name := range opts.Refs {
		if !present[name] && !opts.Live[name] {
			addProblem(Problem{Kind: Missing, Name: name, Detail: fmt.Sprintf("content of %d file(s)", opts.Refs[name])})
		}
	}
	for name := range present {
		if (strings.HasPrefix(name, "c/") || strings.HasPrefix(name, "m/")) && !opts.Live[name] {
			rep.Unreferenced = append(rep.Unreferenced, name)
		}
	}

	if opts.ReadData != nil {
		err := opts.ReadData(ctx,
			func(n int64) {
				mu.Lock()
				rep.DataBytes += n
				mu.Unlock()
			},
			func(path string, err error) {
				addProblem(Problem{Kind: Corrupt, Detail: fmt.Sprintf("%s: %v", path, err)})
			})
		if err != nil {
			return nil, fmt.Errorf("maint: reading data: %w", err)
		}
	}

	sort.Strings(rep.Unreferenced)
	sort.Slice(rep.Problems, func(a, b int) bool {
		pa, pb := rep.Problems[a], rep.Problems[b]
		if pa.Kind != pb.Kind {
			return pa.Kind < pb.Kind
		}
		if pa.Name != pb.Name {
			return pa.Name < pb.Name
		}
		return pa.Detail < pb.Detail
	})
	return rep, nil
}

// expectedHash returns the SHA-256 an object's name claims, for c/, m/ and k/ names.
func expectedHash(name string) ([32]byte, error) {
	switch {
	case strings.HasPrefix(name, "c/"):
		l, err := dedup.ParseContentName(name)
		return l, err
	case strings.HasPrefix(name, "m/"):
		l, err := dedup.ParseMetaName(name)
		return l, err
	default:
		return keyring.ParseSlotName(name)
	}
}

func verifyObject(ctx context.Context, store backend.Store, i backend.Info, buf []byte, progress func(int64)) (Problem, bool) {
	want, err := expectedHash(i.Name)
	if err != nil {
		return Problem{Kind: BadName, Name: i.Name, Detail: "name is not a SHA-256 locator"}, false
	}
	rc, err := store.Get(ctx, i.Name, 0, -1)
	if errors.Is(err, backend.ErrNotExist) {
		// Deleted since the listing (a concurrent gc): only a problem if referenced,
		// which the live-set pass reports.
		return Problem{}, true
	}
	if err != nil {
		return Problem{Kind: Unreadable, Name: i.Name, Detail: err.Error()}, false
	}
	defer rc.Close()
	h := sha256.New()
	var n int64
	for {
		k, rerr := rc.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			n += int64(k)
			if progress != nil {
				progress(int64(k))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return Problem{Kind: Unreadable, Name: i.Name, Detail: rerr.Error()}, false
		}
	}
	var got [32]byte
	h.Sum(got[:0])
	if got != want {
		return Problem{Kind: Corrupt, Name: i.Name, Detail: "bytes do not hash to the object's name"}, false
	}
	if n != i.Size {
		return Problem{Kind: Corrupt, Name: i.Name, Detail: fmt.Sprintf("listed as %d bytes, read %d", i.Size, n)}, false
	}
	return Problem{}, true
}

// maxMetaObject bounds what maint reads of one root, lock or state object: the largest
// metadata plaintext plus room for the format's framing and padding (docs/format.md). A
// larger object does not decrypt, like any other damaged one.
const maxMetaObject = dedup.MaxMetaSize + 1<<20
