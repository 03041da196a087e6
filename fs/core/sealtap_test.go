package core

import (
	"bytes"
	"sync"
	"testing"

	"github.com/imgfs/imgfs/dedup"
)

// tapRecorder is a PlaintextObserver that takes files starting with "IMG" and records what
// it is handed.
type tapRecorder struct {
	mu     sync.Mutex
	asked  map[Ino]int64
	handed map[Ino][]byte
	ids    map[Ino][32]byte
}

func (r *tapRecorder) WantPlaintext(ino Ino, size int64, head []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked[ino] = size
	return bytes.HasPrefix(head, []byte("IMG"))
}

func (r *tapRecorder) Plaintext(ino Ino, id [32]byte, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handed[ino], r.ids[ino] = b, id
}

// TestSealTap: sealing hands the plaintext it read to the observer, with the content ID
// the inode gets; a declined file is not collected; an edit that keeps chunks of its base
// (not read whole) is not offered.
func TestSealTap(t *testing.T) {
	e := newEnv(t)
	rec := &tapRecorder{asked: map[Ino]int64{}, handed: map[Ino][]byte{}, ids: map[Ino][32]byte{}}
	e.opts.Plaintext = rec
	f := e.open()
	small := append([]byte("IMG small"), randBytes(5000)...)
	big := append([]byte("IMG big"), randBytes(3*dedup.ChunkMax)...) // several chunks
	other := randBytes(7000)
	files := map[string][]byte{"/small.jpg": small, "/big.jpg": big, "/other": other}
	inos := map[string]Ino{}
	for p, b := range files {
		inos[p] = writeFile(t, f, p, b)
	}
	ok(t, f.Sync(ctx()))
	for p, b := range files {
		ino := inos[p]
		id, sealed, err := f.ContentID(ino)
		ok(t, err)
		rec.mu.Lock()
		got, handed, asked := rec.handed[ino], rec.handed[ino] != nil, rec.asked[ino]
		rec.mu.Unlock()
		if !sealed || asked != int64(len(b)) {
			t.Fatalf("%s: sealed %v, asked with size %d, want %d", p, sealed, asked, len(b))
		}
		if p == "/other" {
			if handed {
				t.Fatalf("%s: handed over although declined", p)
			}
			continue
		}
		if !bytes.Equal(got, b) || rec.ids[ino] != id {
			t.Fatalf("%s: handed %d bytes (id match %v), want the file's %d", p, len(got), rec.ids[ino] == id, len(b))
		}
	}
	// Overwrite the end of big in place: its first chunks are kept from the base.
	rec.mu.Lock()
	delete(rec.handed, inos["/big.jpg"])
	delete(rec.asked, inos["/big.jpg"])
	rec.mu.Unlock()
	h, err := f.OpenFile(inos["/big.jpg"], 2) // O_RDWR
	ok(t, err)
	must(h.WriteAt([]byte("edited tail"), int64(len(big)-20)))
	ok(t, h.Flush())
	ok(t, h.Release())
	ok(t, f.Sync(ctx()))
	if _, sealed, _ := f.ContentID(inos["/big.jpg"]); !sealed {
		t.Fatal("the edit is not sealed")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.handed[inos["/big.jpg"]] != nil {
		t.Fatal("an edit sealed partly from its base was handed over")
	}
}
