package core

import (
	"bytes"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"syscall"
	"testing"
)

// TestModel runs random operations against a map model, with clean reopens, simulated
// kill -9 (right after a close, so the model knows what is acknowledged), and fresh-cache
// rebuilds after Sync.
func TestModel(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	r := rand.New(rand.NewPCG(1, 2))
	model := map[string][]byte{}
	names := []string{"a", "b", "c", "d", "e"}
	pick := func() string { return names[r.IntN(len(names))] }
	check := func(when string) {
		t.Helper()
		ents := must(f.ReadDir(RootIno))
		var got []string
		for _, de := range ents {
			got = append(got, de.Name)
		}
		var want []string
		for n := range model {
			want = append(want, n)
		}
		sort.Strings(got)
		sort.Strings(want)
		if !equalStrings(got, want) {
			t.Fatalf("%s: names %v, want %v", when, got, want)
		}
		for n, data := range model {
			if g := readFile(t, f, "/"+n); !bytes.Equal(g, data) {
				t.Fatalf("%s: %s: %d bytes, want %d (first diff %d)", when, n, len(g), len(data), firstDiff(g, data))
			}
		}
	}
	for step := 0; step < 250; step++ {
		switch op := r.IntN(100); {
		case op < 30: // write a whole file
			n := pick()
			data := randBytes(r.IntN(3 * spoolBlock))
			writeFile(t, f, "/"+n, data)
			model[n] = data
		case op < 50: // overwrite a range of an existing file
			n := pick()
			if model[n] == nil {
				continue
			}
			h := must(f.OpenFile(must(f.Resolve("/"+n)), os.O_RDWR))
			off := r.IntN(len(model[n]) + spoolBlock)
			p := randBytes(r.IntN(2 * spoolBlock))
			must(h.WriteAt(p, int64(off)))
			if end := off + len(p); end > len(model[n]) {
				model[n] = append(model[n], make([]byte, end-len(model[n]))...)
			}
			copy(model[n][off:], p)
			ok(t, h.Release())
		case op < 58: // truncate
			n := pick()
			if model[n] == nil {
				continue
			}
			sz := int64(r.IntN(len(model[n]) + spoolBlock))
			must(f.SetAttr(must(f.Resolve("/"+n)), SetAttrRequest{Size: &sz}))
			if int(sz) <= len(model[n]) {
				model[n] = model[n][:sz]
			} else {
				model[n] = append(model[n], make([]byte, int(sz)-len(model[n]))...)
			}
		case op < 68: // rename
			a, b := pick(), pick()
			err := f.Rename(RootIno, a, RootIno, b)
			if model[a] == nil {
				wantErr(t, err, syscall.ENOENT)
				continue
			}
			ok(t, err)
			if a != b {
				model[b] = model[a]
				delete(model, a)
			}
		case op < 75: // unlink
			n := pick()
			err := f.Remove(RootIno, n, false)
			if model[n] == nil {
				wantErr(t, err, syscall.ENOENT)
				continue
			}
			ok(t, err)
			delete(model, n)
		case op < 82:
			ok(t, f.Sync(ctx()))
		case op < 88:
			check("before reopen")
			ok(t, f.Close())
			f = e.open()
			check("after reopen")
		case op < 94: // kill -9 right after a barrier (the last op must have been a close)
			n := pick()
			data := randBytes(r.IntN(2 * spoolBlock))
			writeFile(t, f, "/"+n, data)
			model[n] = data
			f.crash()
			f = e.open()
			check("after crash")
		default:
			ok(t, f.Sync(ctx()))
			check("before fresh cache")
			ok(t, f.Close())
			e.cache = t.TempDir()
			f = e.open()
			check("fresh cache")
		}
	}
	check("end")
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestConcurrentWriters: several goroutines write, rewrite, rename and read their own files
// while sealers and the committer run (run with -race).
func TestConcurrentWriters(t *testing.T) {
	e := newEnv(t)
	e.opts.SealWorkers = 3
	f := e.open()
	var wg sync.WaitGroup
	final := make([][]byte, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			name := "/w" + itoa(w)
			for i := 0; i < 25; i++ {
				data := randBytes(r.IntN(200_000))
				writeFile(t, f, name+".tmp", data)
				if err := f.Rename(RootIno, "w"+itoa(w)+".tmp", RootIno, "w"+itoa(w)); err != nil {
					t.Error(err)
					return
				}
				if got := readFile(t, f, name); !bytes.Equal(got, data) {
					t.Errorf("%s: bytes differ", name)
					return
				}
				final[w] = data
			}
		}(w)
	}
	wg.Wait()
	ok(t, f.Sync(ctx()))
	ok(t, f.Close())
	e.cache = t.TempDir()
	f = e.open()
	for w := range final {
		if got := readFile(t, f, "/w"+itoa(w)); !bytes.Equal(got, final[w]) {
			t.Fatalf("w%d differs after rebuild", w)
		}
	}
}
