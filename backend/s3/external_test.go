package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/storetest"
	"github.com/imgfs/imgfs/backend/storeurl"
)

// Tests against an S3 server of your own (SeaweedFS, MinIO, AWS), not run in CI:
//
//	IMGFS_S3_TEST_URL=s3:http://127.0.0.1:8333/imgfs-test AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
//	  go test -run 'TestExternal' ./backend/s3
//
// IMGFS_S3_TEST_PHASE=write|verify with IMGFS_S3_TEST_OBJECTS=N splits TestExternalWriteVerify
// in two, so that something can happen to the store in between (bench/seaweedfs-cluster.sh
// kills a volume server there).
func externalURL(t *testing.T) string {
	u := os.Getenv("IMGFS_S3_TEST_URL")
	if u == "" {
		t.Skip("IMGFS_S3_TEST_URL not set")
	}
	return u
}

func TestExternalConformance(t *testing.T) {
	u := externalURL(t)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	var n atomic.Int32
	storetest.RunOptions(t, func(t *testing.T) backend.Store {
		st, err := storeurl.Open(context.Background(), fmt.Sprintf("%s/conformance-%s-%02d", strings.TrimSuffix(u, "/"), run, n.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}, storetest.Options{LargeSize: 16 << 20})
}

// TestExternalWriteVerify writes objects named by the SHA-256 of their bytes under "demo"
// (phase write), then lists and reads every one back and checks its hash (phase verify).
func TestExternalWriteVerify(t *testing.T) {
	u := externalURL(t)
	phase := os.Getenv("IMGFS_S3_TEST_PHASE")
	want, _ := strconv.Atoi(os.Getenv("IMGFS_S3_TEST_OBJECTS"))
	if want <= 0 {
		want = 50
	}
	ctx := context.Background()
	st, err := storeurl.Open(ctx, strings.TrimSuffix(u, "/")+"/demo")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if phase == "" || phase == "write" {
		start := time.Now()
		var bytesW int64
		rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
		for i := 0; i < want; i++ {
			data := storetest.RandBytes(100_000 + rnd.IntN(4<<20))
			sum := sha256.Sum256(data)
			x := hex.EncodeToString(sum[:])
			if err := st.Put(ctx, "c/"+x[:2]+"/"+x, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatalf("Put %d: %v", i, err)
			}
			bytesW += int64(len(data))
		}
		el := time.Since(start)
		t.Logf("wrote %d objects, %.1f MB in %v (%.1f MB/s)", want, float64(bytesW)/1e6, el.Round(time.Millisecond), float64(bytesW)/1e6/el.Seconds())
	}
	if phase == "" || phase == "verify" {
		start := time.Now()
		var names []string
		if err := st.List(ctx, "c/", func(i backend.Info) error { names = append(names, i.Name); return nil }); err != nil {
			t.Fatalf("List: %v", err)
		}
		var bytesR int64
		for _, n := range names {
			b, err := storetest.ReadAll(ctx, st, n, 0, -1)
			if err != nil {
				t.Fatalf("Get %s: %v", n, err)
			}
			sum := sha256.Sum256(b)
			if !strings.HasSuffix(n, hex.EncodeToString(sum[:])) {
				t.Fatalf("%s: content does not hash to its name", n)
			}
			bytesR += int64(len(b))
		}
		if len(names) < want {
			t.Fatalf("listed %d objects, want at least %d", len(names), want)
		}
		el := time.Since(start)
		t.Logf("verified %d objects, %.1f MB in %v (%.1f MB/s): every one hashes to its name", len(names), float64(bytesR)/1e6, el.Round(time.Millisecond), float64(bytesR)/1e6/el.Seconds())
	}
}
