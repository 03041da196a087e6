package similar

import (
	"crypto/sha256"
	"testing"

	"github.com/imgfs/imgfs/fs/core"
)

// TestHandoff: a photo whose plaintext sealing handed over is embedded from it, without
// opening the file; one without a hand-off is read.
func TestHandoff(t *testing.T) {
	v := newFakeVault()
	e := &fakeEmbedder{id: "fake/1"}
	x := start(t, v, e)
	a := fakeImage(1, 0)
	ino := v.write("a.jpg", a)
	if !x.WantPlaintext(ino, int64(len(a)), a[:16]) {
		t.Fatal("a photo's plaintext is declined")
	}
	x.Plaintext(ino, sha256.Sum256(a), a)
	x.OnSealed(ino)
	wait(t, x)
	if n := v.opens.Load(); n != 0 {
		t.Fatalf("the indexer opened the file %d times although its plaintext was handed over", n)
	}
	b := fakeImage(1, 1)
	x.OnSealed(v.write("b.jpg", b))
	wait(t, x)
	if n := v.opens.Load(); n != 1 {
		t.Fatalf("a file without a hand-off was opened %d times, want 1", n)
	}
	if got := paths(query(t, x, v, "a.jpg")); len(got) != 1 || got[0] != "b.jpg" {
		t.Fatalf("matches of a.jpg = %v", got)
	}
	// A byte-identical copy is not embedded again: its hand-off is dropped, not kept.
	c := v.write("copy.jpg", a)
	x.Plaintext(c, sha256.Sum256(a), a)
	x.OnSealed(c)
	wait(t, x)
	if st := x.Stats(); st.FromPlaintext != 1 || st.Embeddings != 2 {
		t.Fatalf("stats %+v", st)
	}
	x.hmu.Lock()
	defer x.hmu.Unlock()
	if len(x.held) != 0 || x.heldBytes != 0 {
		t.Fatalf("%d hand-offs (%d bytes) still held after use", len(x.held), x.heldBytes)
	}
}

// TestHandoffBounded: non-images, files over the size limit and hand-offs while the
// queue is long are declined; at most handoffPhotos files and handoffBytes bytes are held,
// the oldest dropped first.
func TestHandoffBounded(t *testing.T) {
	x, err := New(Config{Embedder: &fakeEmbedder{id: "fake/1"}, Logger: quiet(), Threshold: fakeThreshold})
	if err != nil {
		t.Fatal(err)
	}
	img := fakeImage(1, 0)
	for _, c := range []struct {
		what string
		size int64
		head []byte
	}{
		{"text", 100, []byte("shopping list")},
		{"empty", 0, nil},
		{"too large", handoffFile + 1, img[:16]},
	} {
		if x.WantPlaintext(2, c.size, c.head) {
			t.Fatalf("%s: taken", c.what)
		}
	}
	for i := 0; i <= handoffQueue; i++ {
		x.OnSealed(core.Ino(10 + i)) // before Start: waits in x.early
	}
	if x.WantPlaintext(2, int64(len(img)), img[:16]) {
		t.Fatal("taken while the queue is long")
	}
	x.early = nil
	var ids [][32]byte
	for i := 0; i < handoffPhotos+2; i++ {
		b := fakeImage(i, 0)
		id := sha256.Sum256(b)
		ids = append(ids, id)
		x.Plaintext(2, id, b)
	}
	if len(x.held) != handoffPhotos {
		t.Fatalf("%d hand-offs held, want %d", len(x.held), handoffPhotos)
	}
	if _, ok := x.takePlaintext(ids[0]); ok {
		t.Fatal("the oldest hand-off was kept")
	}
	if b, ok := x.takePlaintext(ids[len(ids)-1]); !ok || string(b) != string(fakeImage(len(ids)-1, 0)) {
		t.Fatal("the newest hand-off is not held")
	}
	big := make([]byte, handoffFile)
	copy(big, img)
	for i := 0; i < 3; i++ {
		big[len(big)-1] = byte(i)
		x.Plaintext(2, sha256.Sum256(big), append([]byte(nil), big...))
	}
	if x.heldBytes > handoffBytes {
		t.Fatalf("%d bytes held, limit %d", x.heldBytes, handoffBytes)
	}
}
