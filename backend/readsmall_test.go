package backend_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/local"
)

// ReadSmall gives objects up to the limit whole, refuses a larger one with ErrTooLarge
// (one byte over is enough) and passes ErrNotExist through.
func TestReadSmall(t *testing.T) {
	ctx := context.Background()
	s, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, n := range []int{0, 1, 100, 101} {
		b := bytes.Repeat([]byte{byte(n)}, n)
		name := "m/obj" + string(rune('a'+n%26)) + string(rune('a'+n/26))
		if err := s.Put(ctx, name, bytes.NewReader(b), int64(n)); err != nil {
			t.Fatal(err)
		}
		got, err := backend.ReadSmall(ctx, s, name, 100)
		if n <= 100 && (err != nil || !bytes.Equal(got, b)) {
			t.Fatalf("%d bytes, limit 100: %d bytes, %v", n, len(got), err)
		}
		if n > 100 && (!errors.Is(err, backend.ErrTooLarge) || got != nil) {
			t.Fatalf("%d bytes, limit 100: %d bytes, %v; want ErrTooLarge", n, len(got), err)
		}
	}
	if _, err := backend.ReadSmall(ctx, s, "m/missing", 100); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("missing object: %v", err)
	}
}
