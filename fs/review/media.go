package review

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"golang.org/x/image/draw"

	"github.com/imgfs/imgfs/embed/imgdecode"
)

// Info is what the page shows under a thumbnail, read from the mount when a page of
// groups is served (never cached on disk).
type Info struct {
	Size   int64  `json:"size"`
	Width  int    `json:"width,omitempty"` // upright (EXIF orientation applied)
	Height int    `json:"height,omitempty"`
	Taken  string `json:"taken,omitempty"` // EXIF date taken, "2006-01-02 15:04:05"
	Error  string `json:"error,omitempty"`
}

// Limits of what the server reads from one file.
const (
	headBytes     = 256 << 10 // enough for the EXIF segment and the header of nearly every photo
	maxInfoBytes  = 64 << 20  // a header past the head is looked for up to here
	maxThumbBytes = 256 << 20 // larger files get no thumbnail
	maxPixels     = 200 << 20 // 200 MP
	// ThumbSize is the long side of a thumbnail in pixels (sharp at 2x on a 160 px card).
	ThumbSize = 320
)

// readInfo stats rel and reads its header through root (the mount).
func readInfo(root *os.Root, rel string) Info {
	f, err := root.Open(rel)
	if err != nil {
		return Info{Error: cleanErr(err)}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Info{Error: cleanErr(err)}
	}
	if !st.Mode().IsRegular() {
		return Info{Error: "not a regular file"}
	}
	inf := Info{Size: st.Size()}
	head := make([]byte, min(st.Size(), headBytes))
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		inf.Error = cleanErr(err)
		return inf
	}
	head = head[:n]
	inf.Taken = DateTaken(head)
	cfg, err := imgdecode.DecodeConfig(head)
	if err != nil && st.Size() > int64(len(head)) && st.Size() <= maxInfoBytes {
		// A header past the first bytes (a big EXIF thumbnail, a PNG with big chunks first).
		all := make([]byte, st.Size())
		if _, err2 := f.ReadAt(all, 0); err2 == nil {
			cfg, err = imgdecode.DecodeConfig(all)
		}
	}
	if err != nil {
		inf.Error = "not a readable image"
		return inf
	}
	inf.Width, inf.Height = cfg.Width, cfg.Height
	if cfg.Orientation >= 5 {
		inf.Width, inf.Height = cfg.Height, cfg.Width
	}
	return inf
}

// cleanErr is an error message without the mount's absolute path.
func cleanErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// makeThumb decodes the image at rel (at reduced DCT scale for JPEGs) and returns a JPEG of
// at most ThumbSize pixels on its long side. Everything stays in memory.
func makeThumb(root *os.Root, rel string) ([]byte, error) {
	f, err := root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > maxThumbBytes {
		return nil, fmt.Errorf("not a regular file of at most %d bytes", maxThumbBytes)
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	cfg, err := imgdecode.DecodeConfig(b)
	if err != nil {
		return nil, err
	}
	w, h := cfg.Width, cfg.Height
	if cfg.Orientation >= 5 {
		w, h = h, w
	}
	tw, th := fit(w, h, ThumbSize)
	img, _, err := imgdecode.DecodeWith(b, imgdecode.Options{MaxPixels: maxPixels, MinWidth: tw, MinHeight: th})
	if err != nil {
		return nil, err
	}
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	sb := img.Bounds()
	var s draw.Scaler = draw.CatmullRom
	if sb.Dx() > 4*tw {
		// A full-size decode (not a DCT-scaled JPEG): Catmull-Rom's kernel would span
		// dozens of source pixels per output pixel; bilinear is 20x cheaper here.
		s = draw.ApproxBiLinear
	}
	s.Scale(dst, dst.Bounds(), img, sb, draw.Src, nil)
	var out bytes.Buffer
	if err := jpeg.Encode(&out, dst, &jpeg.Options{Quality: 82}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// fit scales w x h to fit in a box of n x n (never up).
func fit(w, h, n int) (int, int) {
	if w <= n && h <= n {
		return max(w, 1), max(h, 1)
	}
	if w >= h {
		return n, max(1, h*n/w)
	}
	return max(1, w*n/h), n
}

// thumbCache keeps recent thumbnails in memory (LRU, bounded in bytes): paging back and
// forth does not decode again. Keyed by path, size and mtime, so an edited file is redone.
type thumbCache struct {
	mu    sync.Mutex
	max   int
	bytes int
	ll    *list.List
	m     map[thumbKey]*list.Element
}

type thumbKey struct {
	path  string
	size  int64
	mtime time.Time
}

type thumbEntry struct {
	k thumbKey
	b []byte
}

func newThumbCache(maxBytes int) *thumbCache {
	return &thumbCache{max: maxBytes, ll: list.New(), m: map[thumbKey]*list.Element{}}
}

func (c *thumbCache) get(k thumbKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*thumbEntry).b, true
	}
	return nil, false
}

func (c *thumbCache) put(k thumbKey, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok || len(b) > c.max {
		return
	}
	c.m[k] = c.ll.PushFront(&thumbEntry{k, b})
	c.bytes += len(b)
	for c.bytes > c.max {
		e := c.ll.Back()
		te := e.Value.(*thumbEntry)
		c.ll.Remove(e)
		delete(c.m, te.k)
		c.bytes -= len(te.b)
	}
}
