package dedup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup/internal/memstore"
)

var ctx = context.Background()

func TestUploadDedup(t *testing.T) {
	st := memstore.New()
	obj, ref := sealBytes(t, testCS(1), randBytes(30, 50_000))
	stored, err := Upload(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj)))
	if err != nil || !stored {
		t.Fatalf("first upload: stored=%v err=%v", stored, err)
	}
	stored, err = Upload(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj)))
	if err != nil || stored {
		t.Fatalf("second upload: stored=%v err=%v", stored, err)
	}
	if st.Puts != 1 || !bytes.Equal(st.Raw(ContentName(ref.Locator)), obj) {
		t.Fatalf("puts=%d", st.Puts)
	}
	res, err := UploadWith(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj)), UploadOptions{Verify: true})
	if err != nil || res.Stored || !res.Verified || res.Repaired {
		t.Fatalf("verified dedup hit: %+v %v", res, err)
	}
}

// racyStore hides an object from the first Stat, as if another writer stored it between
// our Stat and our Put.
type racyStore struct {
	*memstore.Store
	once sync.Once
}

func (r *racyStore) Stat(ctx context.Context, name string) (backend.Info, error) {
	hide := false
	r.once.Do(func() { hide = true })
	if hide {
		return backend.Info{}, backend.ErrNotExist
	}
	return r.Store.Stat(ctx, name)
}

func TestUploadConcurrentWriter(t *testing.T) {
	obj, ref := sealBytes(t, testCS(1), randBytes(31, 5000))
	st := &racyStore{Store: memstore.New()}
	st.SetRaw(ContentName(ref.Locator), obj)
	stored, err := Upload(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj)))
	if err != nil || stored {
		t.Fatalf("ErrExist from Put must be a dedup hit: stored=%v err=%v", stored, err)
	}
}

func TestUploadConcurrentGoroutines(t *testing.T) {
	st := memstore.New()
	obj, ref := sealBytes(t, testCS(1), randBytes(32, 70_000))
	var wg sync.WaitGroup
	var mu sync.Mutex
	storedCount := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Upload(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj)))
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			if s {
				storedCount++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if storedCount != 1 || st.Puts != 1 || Hash(st.Raw(ContentName(ref.Locator))) != ref.Locator {
		t.Fatalf("stored by %d writers, %d puts", storedCount, st.Puts)
	}
}

func captureLog() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

// TestUploadPoisoned is T16/T17 at the dedup layer: garbage or a valid forgery planted
// under L(X) before the victim writes X.
func TestUploadPoisoned(t *testing.T) {
	x := randBytes(33, 100_000)
	obj, ref := sealBytes(t, testCS(1), x)
	name := ContentName(ref.Locator)
	var forged bytes.Buffer
	y := bytes.Clone(x)
	y[0] ^= 1
	if _, _, err := sealWithKey(ref.Key, bytes.NewReader(y), int64(len(y)), &forged, make([]byte, segSize+tagSize)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what       string
		plant      []byte
		verify     bool
		wantRepair bool
	}{
		{"garbage, other size", randBytes(1, 777), false, true},
		{"garbage, same size, verified", randBytes(2, len(obj)), true, true},
		{"valid forgery, verified", forged.Bytes(), true, true},
		{"garbage, same size, vault mode", randBytes(3, len(obj)), false, false},
	} {
		st := memstore.New()
		st.SetRaw(name, c.plant)
		log, buf := captureLog()
		res, err := UploadWith(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj)), UploadOptions{Verify: c.verify, Logger: log})
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if res.Repaired != c.wantRepair {
			t.Fatalf("%s: repaired=%v", c.what, res.Repaired)
		}
		if c.wantRepair {
			if !bytes.Equal(st.Raw(name), obj) || !res.Stored {
				t.Fatalf("%s: object not repaired", c.what)
			}
			if !strings.Contains(buf.String(), "poisoned object repaired") || !strings.Contains(buf.String(), name) {
				t.Fatalf("%s: no security event logged: %q", c.what, buf.String())
			}
			got, err := Open(ref, st.Raw(name))
			if err != nil || !bytes.Equal(got, x) {
				t.Fatalf("%s: reader after repair: %v", c.what, err)
			}
		} else {
			// Vault mode accepts a same-size object unverified (documented); a reader
			// still gets EIO, never wrong bytes.
			if _, err := Open(ref, st.Raw(name)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: reader accepted planted bytes", c.what)
			}
		}
		if bytes.Contains(buf.Bytes(), []byte(fmt.Sprintf("%x", []byte(ref.Key)))) {
			t.Fatal("key in log")
		}
	}
}

func TestUploadRefusesDamagedLocalObject(t *testing.T) {
	obj, ref := sealBytes(t, testCS(1), randBytes(34, 10_000))
	bad := bytes.Clone(obj)
	bad[len(bad)-1] ^= 1
	st := memstore.New()
	if _, err := Upload(ctx, st, ref.Locator, bytes.NewReader(bad), int64(len(bad))); err == nil {
		t.Fatal("damaged local object uploaded")
	}
	if len(st.Names("")) != 0 {
		t.Fatal("store holds an object after a refused upload")
	}
}

// failStore fails Stat with a transient error.
type failStore struct{ *memstore.Store }

func (failStore) Stat(context.Context, string) (backend.Info, error) {
	return backend.Info{}, backend.Transient(io.ErrUnexpectedEOF)
}

func TestUploadPassesStoreErrors(t *testing.T) {
	obj, ref := sealBytes(t, testCS(1), randBytes(35, 100))
	_, err := Upload(ctx, failStore{memstore.New()}, ref.Locator, bytes.NewReader(obj), int64(len(obj)))
	if !backend.IsTransient(err) {
		t.Fatalf("transient error lost its class: %v", err)
	}
}

// statCounter counts Stats.
type statCounter struct {
	*memstore.Store
	stats int
}

func (s *statCounter) Stat(ctx context.Context, name string) (backend.Info, error) {
	s.stats++
	return s.Store.Stat(ctx, name)
}

// TestUploadPutFirst: PutFirst stores a new object with no Stat; an object already there
// (ErrExist from the create-only Put) is checked like any dedup hit, and a poisoned one is
// repaired.
func TestUploadPutFirst(t *testing.T) {
	obj, ref := sealBytes(t, testCS(1), randBytes(34, 70_000))
	name := ContentName(ref.Locator)
	st := &statCounter{Store: memstore.New()}
	res, err := UploadWith(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj)), UploadOptions{PutFirst: true})
	if err != nil || !res.Stored || st.stats != 0 || st.Puts != 1 {
		t.Fatalf("new object: %+v %v, %d stats %d puts", res, err, st.stats, st.Puts)
	}
	res, err = UploadWith(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj)), UploadOptions{PutFirst: true, Verify: true})
	if err != nil || res.Stored || !res.Verified || st.Puts != 1 {
		t.Fatalf("existing object: %+v %v, %d puts", res, err, st.Puts)
	}
	st.SetRaw(name, randBytes(35, len(obj)))
	log, buf := captureLog()
	res, err = UploadWith(ctx, st, ref.Locator, bytes.NewReader(obj), int64(len(obj)), UploadOptions{PutFirst: true, Verify: true, Logger: log})
	if err != nil || !res.Repaired || !bytes.Equal(st.Raw(name), obj) || !strings.Contains(buf.String(), "poisoned object repaired") {
		t.Fatalf("poisoned object: %+v %v", res, err)
	}
}
