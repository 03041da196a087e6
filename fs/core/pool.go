package core

import (
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Spool pool: a close(2) must make a new spool file durable, which costs an fsync of the
// spool directory on top of the file's own. A background goroutine keeps a few empty spool
// files ready whose directory entries were fsynced together, so Flush needs only the
// file's fsync. Unused pool files are unreferenced spools: Close and the next Open delete
// them.

const poolSize = 8

type pooled struct {
	id uint64
	sp *spoolFile
}

// newSpool returns an empty spool file: from the pool (dirSynced) or created now.
func (f *FS) newSpool() (id uint64, sp *spoolFile, dirSynced bool, err error) {
	select {
	case p := <-f.pool:
		f.kickPool()
		return p.id, p.sp, true, nil
	default:
	}
	f.kickPool()
	id = f.spoolSeq.Add(1)
	sp, err = createSpool(f.spoolPath(id), f.lc.spool)
	return id, sp, false, err
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
				break // disk full or similar: Flush will create and sync its own
			}
			batch = append(batch, pooled{id, sp})
		}
		if len(batch) == 0 {
			continue
		}
		if err := syncDir(filepath.Join(f.dir, "spool")); err != nil {
			for _, p := range batch {
				p.sp.Close()
				f.removeSpool(p.id)
			}
			continue
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
