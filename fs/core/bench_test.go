package core

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// cpuClock returns this process's user+system CPU time.
func cpuClock() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds CPU time per op and MB per CPU-second: on a loaded machine wall-clock MB/s
// mostly measures the neighbours; CPU cost does not.
func reportCPU(b *testing.B, start time.Duration, bytesPerOp int64) {
	cpu := cpuClock() - start
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
	if bytesPerOp > 0 && cpu > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/1e6/cpu.Seconds(), "MB/cpu-s")
	}
}

// BenchmarkWriteSeal4MB: write a 4 MB file through a handle, close it (spool fsync +
// journal), then seal and upload it to a local store (Sync). Distinct content per file, so
// every iteration seals and stores a new object. Reports MB/s for the whole path.
func BenchmarkWriteSeal4MB(b *testing.B) {
	e := newEnv(b)
	e.opts.CommitDelay = time.Hour // measure write+seal; one commit per Sync
	f := e.open()
	data := randBytes(4 << 20)
	chunk := 128 << 10 // FUSE's largest write
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	c0 := cpuClock()
	for i := 0; i < b.N; i++ {
		data[0], data[1], data[2] = byte(i), byte(i>>8), byte(i>>16)
		_, h, err := f.CreateFlags(RootIno, "f"+itoa(i), 0o644, os.O_RDWR|os.O_CREATE|os.O_EXCL)
		ok(b, err)
		for off := 0; off < len(data); off += chunk {
			must(h.WriteAt(data[off:off+chunk], int64(off)))
		}
		ok(b, h.Flush())
		ok(b, h.Release())
		ok(b, f.Sync(ctx()))
	}
	reportCPU(b, c0, int64(len(data)))
}

// BenchmarkWrite4MBClose: the foreground part only (write + close); sealing runs behind.
func BenchmarkWrite4MBClose(b *testing.B) {
	e := newEnv(b)
	e.opts.CommitDelay = time.Hour
	f := e.open()
	data := randBytes(4 << 20)
	chunk := 128 << 10
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		data[0], data[1], data[2] = byte(i), byte(i>>8), byte(i>>16)
		_, h, err := f.CreateFlags(RootIno, "f"+itoa(i), 0o644, os.O_RDWR|os.O_CREATE|os.O_EXCL)
		ok(b, err)
		for off := 0; off < len(data); off += chunk {
			must(h.WriteAt(data[off:off+chunk], int64(off)))
		}
		ok(b, h.Flush())
		ok(b, h.Release())
	}
	b.StopTimer()
	ok(b, f.Sync(ctx()))
}

// BenchmarkSmallFile: create + write 4 KiB + close (the durable part of a small-file copy).
func BenchmarkSmallFile(b *testing.B) {
	e := newEnv(b)
	e.opts.CommitDelay = time.Hour
	f := e.open()
	data := randBytes(4 << 10)
	b.ResetTimer()
	c0 := cpuClock()
	for i := 0; i < b.N; i++ {
		_, h, err := f.CreateFlags(RootIno, "s"+itoa(i), 0o644, os.O_RDWR|os.O_CREATE|os.O_EXCL)
		ok(b, err)
		must(h.WriteAt(data, 0))
		ok(b, h.Flush())
		ok(b, h.Release())
	}
	reportCPU(b, c0, 0)
}

// BenchmarkRead4MBSealed: read a sealed 4 MB file from the local object cache.
func BenchmarkRead4MBSealed(b *testing.B) {
	e := newEnv(b)
	f := e.open()
	data := randBytes(4 << 20)
	ino := writeFile(b, f, "/r", data)
	ok(b, f.Sync(ctx()))
	buf := make([]byte, 128<<10)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	c0 := cpuClock()
	for i := 0; i < b.N; i++ {
		h := must(f.OpenFile(ino, os.O_RDONLY))
		for off := int64(0); off < int64(len(data)); off += int64(len(buf)) {
			must(h.ReadAt(buf, off))
		}
		ok(b, h.Release())
	}
	reportCPU(b, c0, int64(len(data)))
}

// BenchmarkEditFsync: a 4 KiB pwrite + fsync inside a 64 MB sealed file (the database and
// metadata-edit pattern): one op re-seals and uploads the chunk around the edit and writes a
// root. bench/editbench.sh measures the same on a mount with a 500 MB file.
func BenchmarkEditFsync(b *testing.B) {
	e := newEnv(b)
	e.opts.CommitDelay = time.Hour
	f := e.open()
	const size = 64 << 20
	writeFile(b, f, "/db", randBytes(size))
	ok(b, f.Sync(ctx()))
	h := must(f.OpenFile(must(f.Resolve("/db")), os.O_RDWR))
	defer h.Release()
	p := randBytes(4096)
	b.ResetTimer()
	c0 := cpuClock()
	for i := 0; i < b.N; i++ {
		p[0] = byte(i)
		must(h.WriteAt(p, int64(i*7919*4096)%(size-4096)))
		ok(b, h.Fsync(ctx()))
	}
	reportCPU(b, c0, 0)
}

// BenchmarkEditFsyncPhases is BenchmarkEditFsync with the phases of the fsync timed. Reports the phases of the fsync:
// recording the write, re-sealing the touched chunk(s) and storing them, and the root commit.
func BenchmarkEditFsyncPhases(b *testing.B) {
	e := newEnv(b)
	e.opts.CommitDelay = time.Hour
	f := e.open()
	ino := writeFile(b, f, "/big", randBytes(64<<20))
	ok(b, f.Sync(ctx()))
	h := must(f.OpenFile(ino, os.O_RDWR))
	defer h.Release()
	buf := randBytes(4096)
	var rec, seal, commit time.Duration
	b.ResetTimer()
	c0 := cpuClock()
	for i := 0; i < b.N; i++ {
		off := int64(i*7919*4096) % (64<<20 - 4096)
		must(h.WriteAt(buf, off))
		t0 := time.Now()
		ok(b, f.recordOpen(h.of))
		t1 := time.Now()
		ok(b, f.sealIno(ctx(), ino))
		t2 := time.Now()
		ok(b, f.commitNow(ctx()))
		t3 := time.Now()
		rec, seal, commit = rec+t1.Sub(t0), seal+t2.Sub(t1), commit+t3.Sub(t2)
	}
	reportCPU(b, c0, 0)
	n := float64(b.N)
	b.ReportMetric(float64(rec.Microseconds())/1000/n, "record-ms/op")
	b.ReportMetric(float64(seal.Microseconds())/1000/n, "seal-ms/op")
	b.ReportMetric(float64(commit.Microseconds())/1000/n, "commit-ms/op")
}
