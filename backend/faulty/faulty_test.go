package faulty_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/faulty"
	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/backend/storetest"
)

func newLocal(t *testing.T) *local.Store {
	s, err := local.Open(filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// With no rules the decorator is transparent.
func TestConformance(t *testing.T) {
	storetest.RunOptions(t, func(t *testing.T) backend.Store { return faulty.New(newLocal(t)) },
		storetest.Options{LargeSize: 2 << 20, Rounds: 2})
}

func TestKinds(t *testing.T) {
	ctx := context.Background()
	l := newLocal(t)
	f := faulty.New(l)
	data := storetest.RandBytes(10_000)
	a := storetest.Name("c", "a")
	storetest.MustPut(t, l, a, data)

	// Nth call fails.
	f.Add(faulty.Fault{Op: faulty.OpStat, Nth: 2, Kind: faulty.Error})
	if _, err := f.Stat(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Stat(ctx, a); !backend.IsTransient(err) {
		t.Fatalf("2nd Stat: %v, want the injected transient error", err)
	}
	if _, err := f.Stat(ctx, a); err != nil {
		t.Fatal(err)
	}
	f.Clear()

	// Custom permanent error, limited times.
	quota := backend.Permanent(errors.New("507 QuotaExceeded"))
	f.Add(faulty.Fault{Op: faulty.OpPut, Kind: faulty.Error, Err: quota, Times: 1})
	b := storetest.Name("c", "b")
	if err := f.Put(ctx, b, bytes.NewReader(data), int64(len(data))); !errors.Is(err, quota) {
		t.Fatalf("Put: %v", err)
	}
	if err := f.Put(ctx, b, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put after Times ran out: %v", err)
	}
	f.Clear()

	// Latency honours the context.
	f.Add(faulty.Fault{Op: faulty.OpGet, Kind: faulty.Latency, Latency: time.Hour})
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := f.Get(cctx, a, 0, -1)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get under latency: %v", err)
	}
	f.Clear()

	// Truncated Put is acknowledged but stores a short object.
	c := storetest.Name("c", "c")
	f.Add(faulty.Fault{Op: faulty.OpPut, Kind: faulty.Truncate, N: 100})
	if err := f.Put(ctx, c, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if info, _ := l.Stat(ctx, c); info.Size != 100 {
		t.Fatalf("truncated Put stored %d bytes", info.Size)
	}
	f.Clear()

	// Get: truncate, cut, corrupt.
	f.Add(faulty.Fault{Op: faulty.OpGet, Kind: faulty.Truncate, N: 500, Nth: 1})
	f.Add(faulty.Fault{Op: faulty.OpGet, Kind: faulty.CutBody, N: 700, Nth: 2})
	f.Add(faulty.Fault{Op: faulty.OpGet, Kind: faulty.Corrupt, N: 900, Nth: 3})
	got, err := storetest.ReadAll(ctx, f, a, 0, -1)
	if err != nil || !bytes.Equal(got, data[:500]) {
		t.Fatalf("truncated Get: %d bytes, %v", len(got), err)
	}
	got, err = storetest.ReadAll(ctx, f, a, 0, -1)
	if !backend.IsTransient(err) || !bytes.Equal(got, data[:700]) {
		t.Fatalf("cut Get: %d bytes, %v", len(got), err)
	}
	got, err = storetest.ReadAll(ctx, f, a, 0, -1)
	if err != nil || len(got) != len(data) || bytes.Equal(got, data) || got[900] != data[900]^1 {
		t.Fatalf("corrupt Get: %v", err)
	}
	f.Clear()

	// HEAD lies.
	missing := storetest.Name("c", "missing")
	f.Add(faulty.Fault{Op: faulty.OpStat, Kind: faulty.StatExists, N: 42, NamePrefix: missing[:6]})
	if info, err := f.Stat(ctx, missing); err != nil || info.Size != 42 {
		t.Fatalf("StatExists lie: %v %v", info, err)
	}
	f.Clear()
	f.Add(faulty.Fault{Op: faulty.OpStat, Kind: faulty.StatAbsent})
	if _, err := f.Stat(ctx, a); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("StatAbsent lie: %v", err)
	}
	f.Clear()

	// Lost acknowledgement: stored, but reported as a transient failure; the retry then
	// meets ErrExist.
	d := storetest.Name("c", "d")
	f.Add(faulty.Fault{Op: faulty.OpPut, Kind: faulty.LostAck, Nth: 1})
	if err := f.Put(ctx, d, bytes.NewReader(data), int64(len(data))); !backend.IsTransient(err) {
		t.Fatalf("lost ack: %v", err)
	}
	if err := f.Put(ctx, d, bytes.NewReader(data), int64(len(data))); !errors.Is(err, backend.ErrExist) {
		t.Fatalf("Put after lost ack: %v", err)
	}
	if f.Fired(faulty.LostAck) != 1 || f.Calls(faulty.OpPut) < 2 {
		t.Fatalf("counters: fired %d, calls %d", f.Fired(faulty.LostAck), f.Calls(faulty.OpPut))
	}

	// Probabilistic faults fire at about the given share.
	f.Clear()
	f.Seed(7, 7)
	f.Add(faulty.Fault{Op: faulty.OpStat, Kind: faulty.Error, Prob: 0.2})
	fails := 0
	for i := 0; i < 1000; i++ {
		if _, err := f.Stat(ctx, a); err != nil {
			fails++
		}
	}
	if fails < 150 || fails > 250 {
		t.Fatalf("Prob 0.2 fired %d/1000 times", fails)
	}
	_ = io.EOF
}
