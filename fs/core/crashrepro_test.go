package core

import (
	"bytes"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// TestKill9Writers: writers rewrite files (O_TRUNC + shuffled chunk writes, fsync now and
// then) while the FS is killed at a random moment; after reopening, every file holds its
// last acknowledged version, a later attempted one, or is empty — never anything else.
func TestKill9Writers(t *testing.T) {
	for iter := 0; iter < 6; iter++ {
		e := newEnv(t)
		f := e.open()
		type state struct {
			mu    sync.Mutex
			acked []byte
			tried [][]byte
		}
		files := make([]*state, 4)
		for i := range files {
			files[i] = &state{}
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := range files {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(iter), uint64(w)))
				st := files[w]
				name := "t" + itoa(w)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					data := randBytes(r.IntN(300_000))
					st.mu.Lock()
					st.tried = append(st.tried, data)
					st.mu.Unlock()
					var h *Handle
					if ino, err := f.Resolve("/" + name); err == nil {
						h, err = f.OpenFile(ino, os.O_WRONLY)
						if err != nil {
							return
						}
						sz := int64(0)
						if _, err := f.SetAttr(ino, SetAttrRequest{Size: &sz}); err != nil {
							h.Release()
							return
						}
					} else {
						_, h, err = f.Create(RootIno, name, 0o644, false)
						if err != nil {
							return
						}
					}
					var offs []int
					for off := 0; off < len(data); off += 1 + r.IntN(100_000) {
						offs = append(offs, off)
					}
					r.Shuffle(len(offs), func(a, b int) { offs[a], offs[b] = offs[b], offs[a] })
					failed := false
					for j, off := range offs {
						end := len(data)
						for _, o := range offs {
							if o > off && o < end {
								end = o
							}
						}
						_ = j
						if _, err := h.WriteAt(data[off:end], int64(off)); err != nil {
							failed = true
							break
						}
					}
					if !failed && i%3 == 2 {
						failed = h.Fsync(ctx()) != nil
					}
					if !failed {
						failed = h.Flush() != nil
					}
					h.Release()
					if failed {
						return
					}
					st.mu.Lock()
					st.acked, st.tried = data, nil
					st.mu.Unlock()
				}
			}(w)
		}
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		f.crash()
		close(stop)
		wg.Wait()
		f = e.open()
		for w, st := range files {
			got, err := func() ([]byte, error) {
				ino, err := f.Resolve("/t" + itoa(w))
				if err != nil {
					return nil, err
				}
				h, err := f.OpenFile(ino, os.O_RDONLY)
				if err != nil {
					return nil, err
				}
				defer h.Release()
				return readAllHandle(t, h), nil
			}()
			if err != nil {
				if st.acked == nil {
					continue
				}
				t.Fatalf("iter %d t%d: %v", iter, w, err)
			}
			okv := len(got) == 0 || bytes.Equal(got, st.acked)
			for _, d := range st.tried {
				okv = okv || bytes.Equal(got, d)
			}
			if !okv {
				t.Fatalf("iter %d t%d: %d bytes, not acked (%d) nor tried (%d versions)", iter, w, len(got), len(st.acked), len(st.tried))
			}
		}
		ok(t, f.Close())
	}
}
