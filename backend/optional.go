package backend

import (
	"context"
	"errors"
	"io"
)

// Optional interfaces: a Store may implement them; decorators (retry, faulty) forward them
// when the store they wrap does. Callers type-assert and fall back when absent.

// SHA256Stater returns, besides the object's Info, the SHA-256 of the whole object as the
// store verified it at upload (S3: x-amz-checksum-sha256 read with checksum mode on a HEAD).
// sum is nil when the store does not know it (a multipart or unchecksummed upload, a store
// without checksums); the caller must then verify by GET and hash where it matters
// (docs/format.md §9).
type SHA256Stater interface {
	StatSHA256(ctx context.Context, name string) (info Info, sum []byte, err error)
}

// Overwriter replaces an existing object (or creates it) atomically: readers see the old
// or the new object, never a mix. It exists only to repair a poisoned object (docs/format.md
// §9, T16-T18 in docs/security-tests.md); normal writes use the create-only Put.
type Overwriter interface {
	Overwrite(ctx context.Context, name string, r io.Reader, size int64) error
}

// IfMatchPutter replaces an object only if its current ETag is etag (an S3 PUT with
// If-Match). A mismatch gives ErrPrecondition. Stores without ETags do not implement it
// (decorators return errors.ErrUnsupported then). Only the store probe (backend/probe) uses
// it: a store that ignores If-Match may ignore If-None-Match too.
type IfMatchPutter interface {
	PutIfMatch(ctx context.Context, name string, r io.Reader, size int64, etag string) error
}

// ErrPrecondition: a conditional write's condition did not hold (HTTP 412).
var ErrPrecondition = errors.New("precondition failed")

// LocalPather is a store whose objects are files on this machine: Path returns the file that
// holds object name. The core reads content objects of such a store in place instead of
// copying them into its read cache (each segment is still authenticated). backend/local
// implements it; the decorators (retry, faulty) do not forward it.
type LocalPather interface {
	Path(name string) (string, error)
}

// UnsyncedPutter is a store whose create-only Put can leave durability for later, so that
// many objects share one flush (docs/core.md, "Group commit"). PutUnsynced stores the
// object as Put does (create-only; readers see all of it or nothing) but may return before
// it is on stable storage; SyncPuts returns once every object PutUnsynced stored before the
// call is durable. A caller must call SyncPuts before it records durably (a committed
// working copy, a root) a reference to an object it stored with PutUnsynced or found
// existing. backend/local implements it; retry's LocalStore forwards it.
type UnsyncedPutter interface {
	PutUnsynced(ctx context.Context, name string, r io.Reader, size int64) error
	SyncPuts(ctx context.Context) error
}
