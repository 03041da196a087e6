package faulty_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/faulty"
	"github.com/imgfs/imgfs/backend/retry"
	"github.com/imgfs/imgfs/backend/s3"
	"github.com/imgfs/imgfs/backend/s3/s3test"
	"github.com/imgfs/imgfs/backend/storetest"
)

// TestProxyT38 is T38 (docs/security-tests.md) at the store layer: about 20% of the requests
// between backend/s3 (wrapped in backend/retry) and a real versitygw fail, stall past the
// request deadline, are reset, have their response cut, or lose their answer after the server
// acted. Every Put either succeeds with the object stored whole, or fails with nothing or the
// whole object stored; every read returns exactly the stored bytes or an error, never other
// bytes; no call hangs past its retry budget; after an outage the store works again.
func TestProxyT38(t *testing.T) {
	srv := s3test.StartServer(t)
	direct := srv.Open(t, "t38-faults")
	p, err := faulty.StartProxy(srv.Endpoint, faulty.ProxyConfig{
		Fail: 0.05, Reset: 0.04, Delay: 0.03, DelayFor: 3 * time.Second, Truncate: 0.05, LostAck: 0.03, Seed: 38,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := srv.Config("t38-faults")
	cfg.Endpoint = p.Addr
	var raw *s3.Store
	for i := 0; i < 20 && raw == nil; i++ {
		raw, err = s3.New(context.Background(), cfg)
	}
	if raw == nil {
		t.Fatalf("opening through the proxy: %v", err)
	}
	ro := retry.Options{MaxAttempts: 8, BaseDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond, RequestTimeout: time.Second}
	st := retry.New(raw, ro)
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(38, 1))

	type obj struct {
		name string
		data []byte
	}
	var stored []obj
	putErrs, exists := 0, 0
	const n = 60
	for i := 0; i < n; i++ {
		data := storetest.RandBytes(1 + rnd.IntN(600_000))
		sum := sha256.Sum256(data)
		x := hex.EncodeToString(sum[:])
		name := "c/" + x[:2] + "/" + x
		start := time.Now()
		err := st.Put(ctx, name, bytes.NewReader(data), int64(len(data)))
		if el := time.Since(start); el > 20*time.Second {
			t.Fatalf("Put took %v", el)
		}
		got, gerr := storetest.ReadAll(ctx, direct, name, 0, -1)
		switch {
		case err == nil || errors.Is(err, backend.ErrExist):
			// ErrExist here can only be our own earlier attempt whose answer was lost.
			if errors.Is(err, backend.ErrExist) {
				exists++
			}
			if gerr != nil || !bytes.Equal(got, data) {
				t.Fatalf("Put %d reported %v but the server holds %d bytes (%v)", i, err, len(got), gerr)
			}
			stored = append(stored, obj{name, data})
		default:
			putErrs++
			t.Logf("Put %d failed cleanly: %v", i, err)
			if gerr == nil && !bytes.Equal(got, data) {
				t.Fatalf("failed Put %d left a damaged object (%d bytes)", i, len(got))
			}
			if gerr == nil {
				stored = append(stored, obj{name, data})
			}
		}
	}
	getOK, getErr := 0, 0
	for _, o := range stored {
		for _, rg := range [][2]int64{{0, -1}, {int64(rnd.IntN(len(o.data))), int64(1 + rnd.IntN(100_000))}} {
			got, err := storetest.ReadAll(ctx, st, o.name, rg[0], rg[1])
			if err != nil {
				getErr++
				t.Logf("Get failed cleanly: %v", err)
				continue
			}
			end := int64(len(o.data))
			if rg[1] >= 0 && rg[0]+rg[1] < end {
				end = rg[0] + rg[1]
			}
			if !bytes.Equal(got, o.data[rg[0]:end]) {
				t.Fatalf("WRONG BYTES from Get(%s, %d, %d): %d bytes", o.name, rg[0], rg[1], len(got))
			}
			getOK++
		}
		if info, err := st.Stat(ctx, o.name); err == nil && info.Size != int64(len(o.data)) {
			t.Fatalf("Stat size %d, want %d", info.Size, len(o.data))
		}
	}
	counts := p.Counts()
	t.Logf("proxy actions %v; puts: %d ok, %d of them ErrExist after a lost answer, %d failed; gets: %d ok, %d failed; retries %d",
		counts, n-putErrs, exists, putErrs, getOK, getErr, st.Retries())
	for _, a := range []faulty.Action{faulty.ActFail, faulty.ActReset, faulty.ActDelay, faulty.ActTruncate, faulty.ActLostAck} {
		if counts[a] == 0 {
			t.Errorf("fault %s never fired: the test did not exercise it", a)
		}
	}
	// With 8 attempts at ~20% faults, nearly everything must get through.
	if putErrs > n/10 || getErr > len(stored)/5 {
		t.Errorf("too many failures: %d puts, %d gets", putErrs, getErr)
	}

	// Outage: calls fail within the retry budget, then work again once the store is back.
	p.SetDown(true)
	start := time.Now()
	_, err = st.Stat(ctx, stored[0].name)
	el := time.Since(start)
	if err == nil || !backend.IsTransient(err) {
		t.Fatalf("Stat with the store down: %v", err)
	}
	if el > 10*time.Second {
		t.Fatalf("Stat with the store down took %v", el)
	}
	p.SetDown(false)
	p.Configure(faulty.ProxyConfig{})
	if got, err := storetest.ReadAll(ctx, st, stored[0].name, 0, -1); err != nil || !bytes.Equal(got, stored[0].data) {
		t.Fatalf("after the outage: %v", err)
	}
}

// A request that stalls longer than the deadline is cut and retried: no call hangs.
func TestProxyStallBounded(t *testing.T) {
	srv := s3test.StartServer(t)
	direct := srv.Open(t, "stall")
	name := storetest.Name("c", "stall")
	storetest.MustPut(t, direct, name, []byte("hello"))
	p, err := faulty.StartProxy(srv.Endpoint, faulty.ProxyConfig{Delay: 1, DelayFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := srv.Config("stall")
	cfg.Endpoint = p.Addr
	cfg.NoCreateBucket = true
	p.Configure(faulty.ProxyConfig{Delay: 0})
	raw, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Configure(faulty.ProxyConfig{Delay: 1, DelayFor: time.Minute})
	st := retry.New(raw, retry.Options{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond, RequestTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err = st.Stat(context.Background(), name)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("stalled Stat: %v after %v", err, time.Since(start))
	}
	if p.Count(faulty.ActDelay) != 3 {
		t.Fatalf("%d attempts reached the proxy, want 3", p.Count(faulty.ActDelay))
	}
}

// TestProxyRequestLog: the request log holds method and path of each request, in order.
func TestProxyRequestLog(t *testing.T) {
	srv := s3test.StartServer(t)
	p, err := faulty.StartProxy(srv.Endpoint, faulty.ProxyConfig{RecordHeads: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := srv.Config("reqlog")
	cfg.Endpoint = p.Addr
	st, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	name := storetest.Name("c", "reqlog")
	p.ResetRequests()
	storetest.MustPut(t, st, name, []byte("hello"))
	if _, err := st.Stat(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	log := p.Requests()
	if len(log) < 2 || !strings.HasPrefix(log[len(log)-1], "HEAD /reqlog/"+name) {
		t.Fatalf("request log %q: want ... PUT, HEAD /reqlog/%s", log, name)
	}
	put := false
	for _, l := range log {
		put = put || strings.HasPrefix(l, "PUT /reqlog/"+name)
	}
	if !put {
		t.Fatalf("request log %q has no PUT of %s", log, name)
	}
	heads := string(p.Heads())
	if !strings.Contains(heads, "PUT /reqlog/"+name+" HTTP/1.1\r\nHost: "+p.Addr+"\r\n") || !strings.Contains(heads, "Authorization: AWS4-HMAC-SHA256") || !strings.Contains(heads, "Content-Length: 5\r\n") {
		t.Fatalf("recorded heads lack the PUT's request line, host, signature or length:\n%s", heads)
	}
	p.ResetRequests()
	if got := p.Requests(); len(got) != 0 {
		t.Fatalf("after ResetRequests: %q", got)
	}
}
