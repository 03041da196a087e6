package core

import (
	"os"
	"sync"
	"testing"
)

// Concurrent Fsyncs on different files (each seals its file and commits a root).
func TestConcurrentFsync(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				_, h, err := f.CreateFlags(RootIno, "f"+itoa(w), 0o644, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
				if err != nil {
					errs <- err
					return
				}
				if _, err := h.WriteAt(randBytes(100_000), 0); err != nil {
					errs <- err
				}
				if err := h.Fsync(ctx()); err != nil {
					errs <- err
				}
				h.Release()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
