package core

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
)

// Read cache: CacheDir/obj/<locator hex> holds whole content objects exactly as stored
// (ciphertext). An object enters the cache after sealing (we wrote it) or after a fetch
// whose SHA-256 matched the locator; every read still goes through dedup.OpenReader, which
// authenticates each segment, so a damaged cache file gives EIO, never wrong bytes (and is
// dropped so the next read refetches).

func (f *FS) objectReader(ctx context.Context, ref dedup.Ref) (io.ReaderAt, io.Closer, error) {
	want := dedup.ObjectSize(ref.Size)
	if f.storePath != nil {
		return f.localObjectReader(ref, want)
	}
	for try := 0; try < 2; try++ {
		p := f.objPath(ref.Locator)
		file, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			if err := f.fetch(ctx, ref.Locator, want); err != nil {
				return nil, nil, err
			}
			file, err = os.Open(p)
		}
		if err != nil {
			return nil, nil, localErr("opening cached object", err)
		}
		r, err := dedup.OpenReader(ref, file, want)
		if err != nil {
			file.Close()
			os.Remove(p)
			if try == 0 {
				continue
			}
			return nil, nil, eio("content object "+ref.Locator.String(), err)
		}
		now := timeNow()
		os.Chtimes(p, now, now) // LRU order
		return r, file, nil
	}
	panic("unreachable")
}

// localObjectReader reads straight from a local directory store (no copy into the cache).
// Every segment is still authenticated; in group/global mode, where others know K_c, the
// whole object is hashed first (OpenVerifiedReader, T17).
func (f *FS) localObjectReader(ref dedup.Ref, want int64) (io.ReaderAt, io.Closer, error) {
	p, err := f.storePath(dedup.ContentName(ref.Locator))
	if err != nil {
		return nil, nil, eio("content object path", err)
	}
	file, err := os.Open(p)
	if err != nil {
		return nil, nil, eio("content object "+ref.Locator.String(), err)
	}
	open := dedup.OpenReader
	if f.verifyMode() {
		open = dedup.OpenVerifiedReader
	}
	r, err := open(ref, file, want)
	if err != nil {
		file.Close()
		return nil, nil, eio("content object "+ref.Locator.String(), err)
	}
	return r, file, nil
}

// cacheBytes stores an object we just uploaded as a cache entry (best effort).
func (f *FS) cacheBytes(loc dedup.Locator, b *bytes.Reader) {
	tmp, err := os.CreateTemp(filepath.Join(f.dir, "tmp"), "fetch-")
	if err != nil {
		return
	}
	_, err = io.Copy(tmp, io.NewSectionReader(b, 0, b.Size()))
	tmp.Close()
	if err != nil || os.Rename(tmp.Name(), f.objPath(loc)) != nil {
		os.Remove(tmp.Name())
		return
	}
	f.touchCache()
}

// fetch downloads one content object into the cache after checking its hash.
func (f *FS) fetch(ctx context.Context, loc dedup.Locator, size int64) error {
	var ch chan struct{}
	for {
		f.cacheMu.Lock()
		other, busy := f.fetching[loc]
		if !busy {
			ch = make(chan struct{})
			f.fetching[loc] = ch
			f.cacheMu.Unlock()
			break
		}
		f.cacheMu.Unlock()
		select {
		case <-other:
			if _, err := os.Stat(f.objPath(loc)); err == nil {
				return nil
			}
		case <-ctx.Done():
			return eio("fetching content", ctx.Err())
		}
	}
	defer func() {
		f.cacheMu.Lock()
		delete(f.fetching, loc)
		f.cacheMu.Unlock()
		close(ch)
	}()
	name := dedup.ContentName(loc)
	rc, err := f.store.Get(ctx, name, 0, -1)
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			return eio("content object "+loc.String()+" is missing from the store", err)
		}
		return eio("fetching "+name, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Join(f.dir, "tmp"), "fetch-")
	if err != nil {
		return localErr("creating temporary object", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	n, err := io.Copy(tmp, io.LimitReader(rc, size+1))
	if err != nil {
		return eio("fetching "+name, err)
	}
	if n != size {
		return eio("fetching "+name, errors.New("object has the wrong size"))
	}
	if err := dedup.VerifyObject(loc, tmp, size); err != nil {
		return eio("fetching "+name, err)
	}
	if err := os.Rename(tmp.Name(), f.objPath(loc)); err != nil {
		return localErr("caching object", err)
	}
	f.touchCache()
	return nil
}

// touchCache evicts least recently used objects beyond ReadCacheBytes. Open readers keep
// their file descriptors, so evicting a file in use is harmless.
func (f *FS) touchCache() {
	dir := filepath.Join(f.dir, "obj")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type ent struct {
		name string
		size int64
		mt   int64
	}
	var all []ent
	var total int64
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue
		}
		all = append(all, ent{e.Name(), info.Size(), info.ModTime().UnixNano()})
		total += info.Size()
	}
	if total <= f.opts.ReadCacheBytes {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mt < all[j].mt })
	for _, e := range all {
		if total <= f.opts.ReadCacheBytes {
			break
		}
		if os.Remove(filepath.Join(dir, e.name)) == nil {
			total -= e.size
		}
	}
}

// CachedObject returns the path of the read cache's copy of content object loc, if there is
// one (imgfs check --repair). The copy is not verified here: the caller hashes it.
func (f *FS) CachedObject(loc dedup.Locator) (string, bool) {
	p := f.objPath(loc)
	st, err := os.Stat(p)
	return p, err == nil && st.Mode().IsRegular()
}

// contentReader reads a chunk list (format v2, pieces included: docs/format.md §11.4): a read
// opens only the chunks it touches,
// so a ranged read fetches only those objects. A few chunk readers stay open.
type contentReader struct {
	f    *FS
	c    dedup.Content
	offs []int64
	mu   sync.Mutex
	open map[int]openChunk
}

type openChunk struct {
	r  io.ReaderAt
	cl io.Closer
}

const openChunksKept = 4

func (f *FS) openContent(c dedup.Content) *contentReader {
	return &contentReader{f: f, c: c, offs: c.Offsets(), open: map[int]openChunk{}}
}

// ReadAt follows io.ReaderAt; failures are EIO.
func (r *contentReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	size := r.offs[len(r.offs)-1]
	if off >= size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < size {
		i := sort.Search(len(r.offs)-1, func(i int) bool { return r.offs[i+1] > off }) // chunk holding off
		want := p[n:min(len(p), n+int(r.offs[i+1]-off))]
		if err := r.readChunk(i, want, off-r.offs[i]); err != nil {
			return n, err
		}
		n += len(want)
		off += int64(len(want))
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readChunk fills p from chunk i at off; a damaged read-cache entry is dropped and fetched
// once more.
func (r *contentReader) readChunk(i int, p []byte, off int64) error {
	for try := 0; ; try++ {
		oc, ok := r.open[i]
		if !ok {
			if len(r.open) >= openChunksKept {
				for j, o := range r.open {
					o.cl.Close()
					delete(r.open, j)
					break
				}
			}
			rd, cl, err := r.f.objectReader(r.f.ctxOrBackground(), r.c.Chunk(i))
			if err != nil {
				return err
			}
			oc = openChunk{rd, cl}
			r.open[i] = oc
		}
		k, err := oc.r.ReadAt(p, r.c.ChunkOffset(i)+off) // a piece starts inside its object
		if k == len(p) {
			return nil
		}
		oc.cl.Close()
		delete(r.open, i)
		if try == 0 && r.f.storePath == nil {
			os.Remove(r.f.objPath(r.c.ChunkLocator(i)))
			continue
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return eio("reading content", err)
	}
}

func (r *contentReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, o := range r.open {
		o.cl.Close()
		delete(r.open, i)
	}
	return nil
}
