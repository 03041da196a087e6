package similar

import (
	"reflect"
	"sort"
	"testing"

	"github.com/imgfs/imgfs/fs/core"
)

func pairStrings(ps []PairOut) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.A+"|"+p.B)
	}
	sort.Strings(out)
	return out
}

// Marks hide pairs from Query, AllPairs and .similar/, persist in embnd across a restart,
// and Unmark brings the pairs back; the trash folder is never a match.
func TestMarksAndTrash(t *testing.T) {
	v := newFakeVault()
	e := &fakeEmbedder{id: "fake/1"}
	x := start(t, v, e)
	populate(v, x)
	wait(t, x)

	before := pairStrings(x.AllPairs(0))
	if !reflect.DeepEqual(paths(query(t, x, v, "2024/IMG_1.jpg")), []string{"copies/same.jpg", "edits/IMG_1.jpg"}) {
		t.Fatalf("setup: %v", paths(query(t, x, v, "2024/IMG_1.jpg")))
	}
	// Mark the edit pair and the identical copies.
	n, err := x.Mark([]PairRef{{"2024/IMG_1.jpg", "edits/IMG_1.jpg"}, {"2024/IMG_1.jpg", "copies/same.jpg"}})
	if err != nil || n != 2 {
		t.Fatalf("Mark = %d, %v", n, err)
	}
	if n, _ := x.Mark([]PairRef{{"edits/IMG_1.jpg", "2024/IMG_1.jpg"}}); n != 0 {
		t.Fatalf("marking again (reversed) added %d", n)
	}
	if got := paths(query(t, x, v, "2024/IMG_1.jpg")); len(got) != 0 {
		t.Fatalf("after marks: %v", got)
	}
	after := pairStrings(x.AllPairs(0))
	for _, p := range after {
		if p == "2024/IMG_1.jpg|edits/IMG_1.jpg" || p == "2024/IMG_1.jpg|copies/same.jpg" {
			t.Fatalf("AllPairs still has marked %s", p)
		}
	}
	if len(after) != len(before)-3 { // the edit pair; the identical pair; and copies/same.jpg|edits (same content as the original)
		t.Fatalf("AllPairs %v -> %v", before, after)
	}
	if _, err := x.Mark([]PairRef{{"2024/IMG_1.jpg", "nosuch.jpg"}}); err == nil {
		t.Fatal("marking a missing file succeeded")
	}
	// .similar/ lists neither the marked group's folders (edits/, copies/) nor its files.
	if got := lsRoot(t, x); !reflect.DeepEqual(got, []string{"2023", "2024"}) {
		t.Fatalf(".similar/ after marks = %v", got)
	}
	if got := x.Marks(); len(got) != 2 {
		t.Fatalf("Marks = %v", got)
	}
	if len(v.aux[TableNotDup]) != 2 {
		t.Fatalf("embnd holds %d entries", len(v.aux[TableNotDup]))
	}

	// A restart (as a remount, or another device reading the same metadata) keeps them.
	x.Close()
	x2 := start(t, v, e)
	wait(t, x2)
	if got := paths(query(t, x2, v, "2024/IMG_1.jpg")); len(got) != 0 {
		t.Fatalf("after restart: %v", got)
	}
	// Reindex recomputes vectors, not content IDs: marks stay.
	if _, err := x2.Reindex(); err != nil {
		t.Fatal(err)
	}
	wait(t, x2)
	if got := pairStrings(x2.AllPairs(0)); !reflect.DeepEqual(got, after) {
		t.Fatalf("after reindex: %v, want %v", got, after)
	}
	// Unmark every mark of one photo.
	if n, err := x2.Unmark([]PairRef{{A: "edits/IMG_1.jpg"}}); err != nil || n != 1 {
		t.Fatalf("Unmark(one path) = %d, %v", n, err)
	}
	if got := paths(query(t, x2, v, "2024/IMG_1.jpg")); !reflect.DeepEqual(got, []string{"edits/IMG_1.jpg"}) {
		t.Fatalf("after unmark: %v", got)
	}
	if n, err := x2.Unmark([]PairRef{{"copies/same.jpg", "2024/IMG_1.jpg"}}); err != nil || n != 1 {
		t.Fatalf("Unmark(pair) = %d, %v", n, err)
	}
	if got := pairStrings(x2.AllPairs(0)); !reflect.DeepEqual(got, before) {
		t.Fatalf("after unmarking all: %v, want %v", got, before)
	}

	// The trash is never a match, and .similar/ does not list it.
	x2.OnSealed(v.write(TrashDir+"/20260101-000000/2023/IMG_2b.jpg", fakeImage(2, 2)))
	wait(t, x2)
	if got := paths(query(t, x2, v, TrashDir+"/20260101-000000/2023/IMG_2b.jpg")); !reflect.DeepEqual(got, []string{"2023/IMG_2b.jpg", "2024/IMG_2.jpg"}) {
		t.Fatalf("a trashed photo's own matches: %v", got) // asking about it still works
	}
	v.unlink("2023/IMG_2b.jpg")
	// The trashed copy still has a match (2024/IMG_2.jpg, which has none), but .similar/
	// does not list the trash.
	if got := lsRoot(t, x2); !reflect.DeepEqual(got, []string{"2024", "copies", "edits"}) {
		t.Fatalf(".similar/ with a trashed copy = %v", got)
	}
	for _, p := range x2.AllPairs(0) {
		if inTrash(p.A) || inTrash(p.B) {
			t.Fatalf("AllPairs lists a trashed file: %+v", p)
		}
	}
	if got := paths(query(t, x2, v, "2024/IMG_2.jpg")); len(got) != 0 {
		t.Fatalf("IMG_2 matches %v after its copy went to the trash", got)
	}
}

// lsRoot lists .similar/.
func lsRoot(t *testing.T, x *Indexer) []string {
	t.Helper()
	ents, err := x.TreeDir(core.RootIno, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name)
	}
	sort.Strings(out)
	return out
}
