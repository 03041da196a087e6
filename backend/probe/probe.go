// Package probe checks that a store honours create-only conditional writes, which the
// multi-device root protocol depends on (docs/core.md, "Several devices"): two devices that
// commit the same root number at once must see exactly one of them win. A store that
// ignores If-None-Match (or honours it only for sequential writes, as SeaweedFS 4.16 did,
// seaweedfs/seaweedfs#8800) would let one device overwrite another's root.
package probe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/imgfs/imgfs/backend"
)

// Prefix is where the probe writes its objects (deleted afterwards).
const Prefix = "probe/"

// DefaultConcurrent is the number of concurrent create-only writes of one key.
const DefaultConcurrent = 8

// Check is one probe check.
type Check struct {
	Name    string
	OK      bool
	Skipped bool   // not applicable to this store (for example: no ETags)
	Detail  string // what was seen
}

// Result of Run.
type Result struct {
	Checks []Check
}

// OK reports whether every check passed or was not applicable.
func (r *Result) OK() bool {
	for _, c := range r.Checks {
		if !c.OK && !c.Skipped {
			return false
		}
	}
	return true
}

// Failed is a one-line summary of the failed checks ("" when OK).
func (r *Result) Failed() string {
	var out []string
	for _, c := range r.Checks {
		if !c.OK && !c.Skipped {
			out = append(out, c.Name+": "+c.Detail)
		}
	}
	return strings.Join(out, "; ")
}

// Run runs the four checks against store with n concurrent writers (0: DefaultConcurrent):
//  1. a create-only Put of a fresh key succeeds;
//  2. repeating it gets ErrExist (HTTP 412) and leaves the first object;
//  3. a Put with a wrong If-Match gets ErrPrecondition (412) and changes nothing (skipped
//     for stores without ETags, such as a local directory; MinIO once ignored it,
//     minio/minio#21526);
//  4. n concurrent create-only Puts of one fresh key: exactly one succeeds, the others get
//     ErrExist, and the object holds the winner's bytes.
//
// An error is returned only when the store could not be used at all (unreachable).
func Run(ctx context.Context, store backend.Store, n int) (*Result, error) {
	if n <= 0 {
		n = DefaultConcurrent
	}
	var tag [8]byte
	rand.Read(tag[:])
	base := Prefix + hex.EncodeToString(tag[:])
	k1, k2 := base+"-a", base+"-b"
	defer func() {
		dctx := context.WithoutCancel(ctx)
		store.Delete(dctx, k1)
		store.Delete(dctx, k2)
	}()
	res := &Result{}
	first := []byte("imgfs probe: first " + base)
	// ErrExist with our bytes stored: our own write whose answer was lost (and retried).
	if err := store.Put(ctx, k1, bytes.NewReader(first), int64(len(first))); err != nil &&
		!(errors.Is(err, backend.ErrExist) && holds(ctx, store, k1, first)) {
		return nil, fmt.Errorf("probe: writing a test object: %w", err)
	}
	res.Checks = append(res.Checks, Check{Name: "create-only put of a fresh key", OK: true, Detail: "succeeded"})

	second := []byte("imgfs probe: second " + base)
	err := store.Put(ctx, k1, bytes.NewReader(second), int64(len(second)))
	c := Check{Name: "repeated create-only put"}
	switch {
	case errors.Is(err, backend.ErrExist):
		c.OK, c.Detail = true, "refused (412)"
	case err == nil:
		c.Detail = "succeeded: the store ignores If-None-Match"
	default:
		return nil, fmt.Errorf("probe: repeating a create-only write: %w", err)
	}
	if c.OK && !holds(ctx, store, k1, first) {
		c.OK, c.Detail = false, "refused, but the object changed"
	}
	res.Checks = append(res.Checks, c)

	c = Check{Name: "put with a wrong If-Match"}
	if im, ok := store.(backend.IfMatchPutter); !ok {
		c.Skipped, c.Detail = true, "the store has no ETags"
	} else {
		err := im.PutIfMatch(ctx, k1, bytes.NewReader(second), int64(len(second)), `"00000000000000000000000000000000"`)
		switch {
		case errors.Is(err, errors.ErrUnsupported):
			c.Skipped, c.Detail = true, "the store has no ETags"
		case errors.Is(err, backend.ErrPrecondition):
			c.OK, c.Detail = true, "refused (412)"
		case err == nil:
			c.Detail = "succeeded: the store ignores If-Match"
		default:
			return nil, fmt.Errorf("probe: a write with a wrong If-Match: %w", err)
		}
		if c.OK && !holds(ctx, store, k1, first) {
			c.OK, c.Detail = false, "refused, but the object changed"
		}
	}
	res.Checks = append(res.Checks, c)

	c, err = concurrent(ctx, store, k2, n)
	if err != nil {
		return nil, err
	}
	res.Checks = append(res.Checks, c)
	return res, nil
}

func concurrent(ctx context.Context, store backend.Store, key string, n int) (Check, error) {
	c := Check{Name: fmt.Sprintf("%d concurrent create-only puts of one key", n)}
	bodies := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		bodies[i] = []byte(fmt.Sprintf("imgfs probe: writer %d of %s", i, key))
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = store.Put(ctx, key, bytes.NewReader(bodies[i]), int64(len(bodies[i])))
		}()
	}
	close(start)
	wg.Wait()
	wins, exist, other := 0, 0, 0
	winner := -1
	var otherErr error
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
			winner = i
		case errors.Is(err, backend.ErrExist):
			exist++
		default:
			other++
			otherErr = err
		}
	}
	if other > 0 {
		return c, fmt.Errorf("probe: concurrent create-only writes: %d of %d failed: %w", other, n, otherErr)
	}
	c.Detail = fmt.Sprintf("%d succeeded, %d refused", wins, exist)
	switch {
	case wins == 1:
		c.OK = holds(ctx, store, key, bodies[winner])
	case wins == 0:
		// Every writer was refused: the winner's answer was lost and its retry refused.
		// Fine if the object is one writer's bytes.
		for _, b := range bodies {
			c.OK = c.OK || holds(ctx, store, key, b)
		}
	}
	if wins <= 1 && !c.OK {
		c.Detail += ", but the object is not a winner's"
	}
	return c, nil
}

func holds(ctx context.Context, store backend.Store, key string, want []byte) bool {
	rc, err := store.Get(ctx, key, 0, -1)
	if err != nil {
		return false
	}
	defer rc.Close()
	got, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	return err == nil && bytes.Equal(got, want)
}
