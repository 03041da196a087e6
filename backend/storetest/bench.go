package storetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/imgfs/imgfs/backend"
)

// BenchPut measures Put of size-byte objects under fresh names.
func BenchPut(b *testing.B, s backend.Store, size int) {
	data := RandBytes(size)
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Put(ctx, Name("c", fmt.Sprint(b.Name(), i, size)), bytes.NewReader(data), int64(size)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchGet measures whole-object Get of one size-byte object.
func BenchGet(b *testing.B, s backend.Store, size int) {
	data := RandBytes(size)
	ctx := context.Background()
	name := Name("c", fmt.Sprint(b.Name(), "get", size))
	if err := s.Put(ctx, name, bytes.NewReader(data), int64(size)); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rc, err := s.Get(ctx, name, 0, -1)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, rc, buf)
		rc.Close()
		if err != nil || n != int64(size) {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
}

// BenchStat measures Stat (a HEAD on S3) of an existing object: the dedup check.
func BenchStat(b *testing.B, s backend.Store) {
	ctx := context.Background()
	name := Name("c", b.Name())
	if err := s.Put(ctx, name, bytes.NewReader([]byte("x")), 1); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Stat(ctx, name); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchPutParallel measures Put of size-byte objects from GOMAXPROCS*4 goroutines.
func BenchPutParallel(b *testing.B, s backend.Store, size int) {
	data := RandBytes(size)
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.SetParallelism(4)
	var ctr int64
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			<-mu
			ctr++
			i := ctr
			mu <- struct{}{}
			if err := s.Put(ctx, Name("c", fmt.Sprint(b.Name(), i, size)), bytes.NewReader(data), int64(size)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
