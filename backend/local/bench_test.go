package local_test

import (
	"testing"

	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/backend/storetest"
)

func benchStore(b *testing.B) *local.Store {
	s, err := local.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkPut4MB(b *testing.B)         { storetest.BenchPut(b, benchStore(b), 4<<20) }
func BenchmarkPut4MBParallel(b *testing.B) { storetest.BenchPutParallel(b, benchStore(b), 4<<20) }
func BenchmarkGet4MB(b *testing.B)         { storetest.BenchGet(b, benchStore(b), 4<<20) }
func BenchmarkStat(b *testing.B)           { storetest.BenchStat(b, benchStore(b)) }
