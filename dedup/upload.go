package dedup

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"

	"github.com/imgfs/imgfs/backend"
)

// UploadOptions tune the dedup check (docs/format.md §9).
type UploadOptions struct {
	// Verify fetches an existing object and checks SHA-256 == locator before accepting
	// it as a dedup hit (group/global mode, --verify-dedup). Otherwise a size match is
	// accepted (vault mode: only this vault's owner can produce valid objects).
	Verify bool
	// Logger receives security events ("poisoned object repaired"); nil = slog.Default().
	Logger *slog.Logger
	// Hashed says obj is the buffer Seal just wrote and hashed into loc, so uploading need
	// not hash it again. Leave it false for a copy read back from disk.
	Hashed bool
	// PutFirst tries the create-only Put before any Stat, for an object that is almost
	// certainly new (a patch object of an edit, docs/format.md §11.4): one request instead
	// of two. ErrExist (it was there) goes through the usual check of an existing object.
	PutFirst bool
}

// UploadResult says what Upload did.
type UploadResult struct {
	Stored   bool // bytes were uploaded
	Verified bool // an existing object was fetched and hashed
	Repaired bool // a bad object under this locator was deleted and replaced
}

// maxUploadRounds bounds stat/put/repair rounds against a store that keeps changing.
const maxUploadRounds = 3

// Upload stores the sealed object unless the store already has it (the dedup check).
// stored reports whether bytes were uploaded. It is UploadWith with vault-mode options.
func Upload(ctx context.Context, store backend.Store, loc Locator, obj io.ReaderAt, size int64) (stored bool, err error) {
	res, err := UploadWith(ctx, store, loc, obj, size, UploadOptions{})
	return res.Stored, err
}

// UploadWith is Upload with options. Put is create-only, so ErrExist from Put means a
// concurrent writer stored the object first: it is then checked like any dedup hit. An
// existing object with the wrong size (or, with Verify, the wrong hash) is a poisoned
// locator: it is deleted and replaced, and a security event is logged. obj itself is
// hashed while uploading and refused if it does not match loc (unless opts.Hashed).
// Retrying transient store errors is the backend decorators' job.
func UploadWith(ctx context.Context, store backend.Store, loc Locator, obj io.ReaderAt, size int64, opts UploadOptions) (UploadResult, error) {
	var res UploadResult
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	name := ContentName(loc)
	for round := 0; round < maxUploadRounds; round++ {
		var info backend.Info
		err := backend.ErrNotExist // PutFirst: go straight to the Put
		if round > 0 || !opts.PutFirst {
			info, err = store.Stat(ctx, name)
		}
		switch {
		case err == nil:
			why, err := checkExisting(ctx, store, name, loc, info.Size, size, opts.Verify)
			if err != nil {
				return res, err
			}
			res.Verified = opts.Verify
			if why == "" {
				return res, nil // dedup hit
			}
			log.Warn("security: poisoned object repaired", "event", "poisoned-object", "object", name, "reason", why)
			if err := store.Delete(ctx, name); err != nil && !errors.Is(err, backend.ErrNotExist) {
				return res, fmt.Errorf("dedup: deleting poisoned object %s: %w", name, err)
			}
			res.Repaired = true
		case errors.Is(err, backend.ErrNotExist):
		default:
			return res, fmt.Errorf("dedup: stat %s: %w", name, err)
		}
		var body io.Reader = io.NewSectionReader(obj, 0, size)
		if !opts.Hashed {
			body = &hashingReader{r: body, h: sha256.New(), left: size, want: loc}
		}
		err = store.Put(ctx, name, body, size)
		if err == nil {
			res.Stored = true
			return res, nil
		}
		if !errors.Is(err, backend.ErrExist) {
			return res, fmt.Errorf("dedup: put %s: %w", name, err)
		}
		// Lost a race with another writer: check what it stored in the next round.
	}
	return res, fmt.Errorf("dedup: object %s keeps changing in the store", name)
}

// checkExisting returns "" for an acceptable dedup hit, or the reason it is poisoned.
func checkExisting(ctx context.Context, store backend.Store, name string, loc Locator, have, want int64, verify bool) (string, error) {
	if have != want {
		return fmt.Sprintf("size %d, want %d", have, want), nil
	}
	if !verify {
		return "", nil
	}
	rc, err := store.Get(ctx, name, 0, -1)
	if errors.Is(err, backend.ErrNotExist) {
		return "vanished during verification", nil
	}
	if err != nil {
		return "", fmt.Errorf("dedup: get %s: %w", name, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(rc, want+1))
	if err != nil {
		return "", fmt.Errorf("dedup: get %s: %w", name, err)
	}
	var got Locator
	h.Sum(got[:0])
	if n != want || got != loc {
		return "content does not hash to its locator", nil
	}
	return "", nil
}

// hashingReader hashes the object while it is uploaded and withholds the last bytes
// (returning an error instead) if the whole does not hash to the locator, so a damaged
// local copy is never stored under a name it does not match.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	left int64
	want Locator
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	if hr.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > hr.left {
		p = p[:hr.left]
	}
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.left -= int64(n)
	if hr.left == 0 {
		var got Locator
		hr.h.Sum(got[:0])
		if got != hr.want {
			return 0, corrupt("local object does not hash to its locator; not uploading")
		}
		return n, nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
