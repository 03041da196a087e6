package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrTooLarge: ReadSmall found an object larger than its limit.
var ErrTooLarge = errors.New("object is larger than expected")

// ReadSmall reads the whole object name into memory, and refuses one larger than limit
// bytes with an error matching ErrTooLarge (reading at most limit+1 bytes of it): no stored
// object makes a reader allocate more than it expects. Callers decide what an oversized
// object means to them (a malformed key slot, a corrupt root, ...).
func ReadSmall(ctx context.Context, s Store, name string, limit int64) ([]byte, error) {
	rc, err := s.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w (more than %d bytes)", name, ErrTooLarge, limit)
	}
	return b, nil
}
