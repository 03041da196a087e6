package s3_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/imgfs/imgfs/backend/s3/s3test"
	"github.com/imgfs/imgfs/backend/storetest"
)

var benchBucket atomic.Int32

// Against versitygw on loopback (posix backend on the same disk as the local store).
func benchS3(b *testing.B) *s3test.Server { return s3test.StartServer(b) }

func bucket() string { return fmt.Sprintf("bench-%03d", benchBucket.Add(1)) }

func BenchmarkPut4MB(b *testing.B) {
	srv := benchS3(b)
	storetest.BenchPut(b, srv.Open(b, bucket()), 4<<20)
}

func BenchmarkPut4MBParallel(b *testing.B) {
	srv := benchS3(b)
	storetest.BenchPutParallel(b, srv.Open(b, bucket()), 4<<20)
}

func BenchmarkGet4MB(b *testing.B) {
	srv := benchS3(b)
	storetest.BenchGet(b, srv.Open(b, bucket()), 4<<20)
}

func BenchmarkStat(b *testing.B) {
	srv := benchS3(b)
	storetest.BenchStat(b, srv.Open(b, bucket()))
}
