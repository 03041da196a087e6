package core

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Spool pool: creating a spool file (open with O_CREAT|O_EXCL, header) costs a directory
// update; a background goroutine keeps a few empty spool files ready so that the first
// write after an open does not wait for it. Their directory entries become durable with the
// group commit that first needs them (batch.go). Unused pool files are unreferenced spools:
// Close and the next Open delete them.

const poolSize = 8

type pooled struct {
	id uint64
	sp *spoolFile
}

// newSpool returns an empty spool file: from the pool or created now.
func (f *FS) newSpool() (id uint64, sp *spoolFile, err error) {
	select {
	case p := <-f.pool:
		f.kickPool()
		return p.id, p.sp, nil
	default:
	}
	f.kickPool()
	id = f.spoolSeq.Add(1)
	sp, err = createSpool(f.spoolPath(id), f.lc.spool)
	return id, sp, err
}

func (f *FS) kickPool() {
	select {
	case f.poolKick <- struct{}{}:
	default:
	}
}

func (f *FS) poolFiller() {
	defer f.wg.Done()
	background()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.poolKick:
		}
		var batch []pooled
		for len(f.pool)+len(batch) < poolSize {
			id := f.spoolSeq.Add(1)
			sp, err := createSpool(f.spoolPath(id), f.lc.spool)
			if err != nil {
				break // disk full or similar: the write creates its own
			}
			batch = append(batch, pooled{id, sp})
		}
		for _, p := range batch {
			f.pool <- p // never blocks: only this goroutine fills, below poolSize
		}
	}
}

// drainPool deletes the unused pool files (at Close).
func (f *FS) drainPool() {
	for {
		select {
		case p := <-f.pool:
			p.sp.Close()
			f.removeSpool(p.id)
		default:
			return
		}
	}
}

// background makes the calling goroutine's OS thread a low-priority one (nice 10) for the
// rest of its life: sealing and pool filling yield the CPU to the file operations that a
// program waits for (docs/perf.md), and catch up when those pause. Fsync and Sync seal on
// the caller's thread, at its priority. The goroutine must never unlock the thread: when it
// returns, the runtime ends the thread instead of reusing it.
func background() {
	runtime.LockOSThread()
	unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 10) // best effort
}

// procsForBackground makes room for n background threads: a goroutine on a nice 10 thread
// holds one of the runtime's GOMAXPROCS slots while the kernel lets the thread wait, so with
// GOMAXPROCS = cores (the default) the sealers could leave no slot for the file operations a
// program waits for (a photo copy ran at half speed on a loaded 2-core machine, docs/perf.md).
// A GOMAXPROCS the user set is kept.
func procsForBackground(n int) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if want := runtime.NumCPU() + n; runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
}
