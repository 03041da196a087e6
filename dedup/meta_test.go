package dedup

import (
	"bytes"
	"errors"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	mk := testCS(9)
	for _, n := range []int{0, 1, 15, 16, 17, segSize - 16, segSize, 3*segSize + 5} {
		p := randBytes(uint64(n)+100, n)
		obj, loc, err := SealMeta(mk, "tree", p)
		if err != nil {
			t.Fatal(err)
		}
		if Hash(obj) != loc {
			t.Fatal("meta locator is not SHA-256(obj)")
		}
		got, err := OpenMeta(mk, "tree", loc, obj)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("size %d: OpenMeta err=%v", n, err)
		}
		if _, err := OpenMeta(mk, "emb", loc, obj); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("size %d: opened under another kind: %v", n, err)
		}
		if _, err := OpenMeta(testCS(8), "tree", loc, obj); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("size %d: opened under another key: %v", n, err)
		}
		obj2, loc2, _ := SealMeta(mk, "tree", p)
		if loc2 == loc || bytes.Equal(obj2, obj) {
			t.Fatal("SealMeta is deterministic; want a fresh salt per object")
		}
	}
}

func TestRootRoundTrip(t *testing.T) {
	mk := testCS(9)
	p := []byte("root pointer payload")
	obj, h, err := SealRoot(mk, 42, p)
	if err != nil || h != Hash(obj) {
		t.Fatal(err)
	}
	got, err := OpenRoot(mk, 42, obj)
	if err != nil || !bytes.Equal(got, p) {
		t.Fatalf("OpenRoot: %v", err)
	}
	if _, err := OpenRoot(mk, 43, obj); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("root opened under another sequence number: %v", err)
	}
	if _, err := OpenMeta(mk, "root", h, obj); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("root opened as a metadata object: %v", err)
	}
	mobj, mloc, _ := SealMeta(mk, "root", p)
	if _, err := OpenRoot(mk, 42, mobj); !errors.Is(err, ErrCorrupt) || mloc == h {
		t.Fatalf("metadata object opened as root: %v", err)
	}
}

func TestNames(t *testing.T) {
	var l Locator
	copy(l[:], randBytes(5, 32))
	for _, c := range []struct {
		name  string
		parse func(string) (Locator, error)
	}{{ContentName(l), ParseContentName}, {MetaName(l), ParseMetaName}} {
		got, err := c.parse(c.name)
		if err != nil || got != l {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	if _, err := ParseMetaName(ContentName(l)); err == nil {
		t.Fatal("content name parsed as meta name")
	}
	for _, seq := range []uint64{0, 1, 99, 1<<64 - 1} {
		got, err := ParseRootName(RootName(seq))
		if err != nil || got != seq {
			t.Fatalf("root %d: %v", seq, err)
		}
	}
	for _, bad := range []string{"r/1", "r/0000000000000000000x", "r/99999999999999999999", "c/00000000000000000001", "r/-0000000000000000001", "r/+0000000000000000001"} {
		if _, err := ParseRootName(bad); err == nil {
			t.Errorf("ParseRootName(%q) accepted", bad)
		}
	}
}
