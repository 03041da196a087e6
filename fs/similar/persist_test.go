package similar

import (
	"reflect"
	"testing"
)

// auxCopy is a deep copy of v's aux tables.
func auxCopy(v *fakeVault) map[string]map[string]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]map[string]string{}
	for t, m := range v.aux {
		if len(m) == 0 {
			continue
		}
		out[t] = map[string]string{}
		for k, val := range m {
			out[t][k] = string(val)
		}
	}
	return out
}

// TestReadOnlyIndexesInMemory: a read-only mount indexes the photos that have no stored
// embedding (another device's, arrived by a merge) in memory, finds their pairs, and
// writes nothing to the vault.
func TestReadOnlyIndexesInMemory(t *testing.T) {
	v := newFakeVault()
	w := start(t, v, &fakeEmbedder{id: "fake/1"})
	w.OnSealed(v.write("2024/IMG_1.jpg", fakeImage(1, 0)))
	w.OnSealed(v.write("notes.txt", []byte("shopping list")))
	wait(t, w)
	w.Close()
	// Arrived from another device, not embedded there yet.
	v.write("edits/IMG_1.jpg", fakeImage(1, 1))
	before := auxCopy(v)

	e := &fakeEmbedder{id: "fake/1"}
	x := startConfig(t, v, Config{Embedder: e, Logger: quiet(), Workers: 2, Threshold: fakeThreshold, ReadOnly: true})
	wait(t, x)
	if got := paths(query(t, x, v, "2024/IMG_1.jpg")); !reflect.DeepEqual(got, []string{"edits/IMG_1.jpg"}) {
		t.Fatalf("read-only matches = %v", got)
	}
	if n := e.calls.Load(); n != 1 {
		t.Fatalf("read-only mount embedded %d files, want 1 (the stored one is loaded)", n)
	}
	// A merge reports another arrival.
	x.OnSealed(v.write("b/IMG_1c.jpg", fakeImage(1, 2)))
	wait(t, x)
	if got := paths(query(t, x, v, "2024/IMG_1.jpg")); !reflect.DeepEqual(got, []string{"b/IMG_1c.jpg", "edits/IMG_1.jpg"}) && !reflect.DeepEqual(got, []string{"edits/IMG_1.jpg", "b/IMG_1c.jpg"}) {
		t.Fatalf("read-only matches after a merge = %v", got)
	}
	if st := x.Stats(); st.Embeddings != 3 || st.Done != 2 || st.Backlog != 0 {
		t.Fatalf("stats %+v", st)
	}
	if after := auxCopy(v); !reflect.DeepEqual(after, before) {
		t.Fatalf("a read-only mount changed the vault's aux tables:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := x.Mark([]PairRef{{A: "2024/IMG_1.jpg", B: "edits/IMG_1.jpg"}}); err == nil {
		t.Fatal("a read-only mount accepted a mark")
	}
}

// TestStoredEmbeddingOfAnotherDevice: a photo whose embedding arrived with it (a merge
// brings other devices' aux entries) is indexed from that entry, not embedded again.
func TestStoredEmbeddingOfAnotherDevice(t *testing.T) {
	other := newFakeVault()
	o := start(t, other, &fakeEmbedder{id: "fake/1"})
	o.OnSealed(other.write("edit.jpg", fakeImage(1, 1)))
	wait(t, o)

	v := newFakeVault()
	e := &fakeEmbedder{id: "fake/1"}
	x := start(t, v, e)
	x.OnSealed(v.write("IMG_1.jpg", fakeImage(1, 0)))
	wait(t, x)
	// The merge: the other device's file and its embedding.
	other.mu.Lock()
	for k, val := range other.table(TableEmb) {
		v.PutAux(TableEmb, []byte(k), val)
	}
	other.mu.Unlock()
	x.OnSealed(v.write("edit.jpg", fakeImage(1, 1)))
	wait(t, x)
	if got := paths(query(t, x, v, "IMG_1.jpg")); !reflect.DeepEqual(got, []string{"edit.jpg"}) {
		t.Fatalf("matches = %v", got)
	}
	if n := e.calls.Load(); n != 1 {
		t.Fatalf("embedder called %d times, want 1 (the other device's embedding is used)", n)
	}
}
