package dedup

// Fuzz targets for every decoder of stored bytes in this package (T27-T30, T32-T34 in
// docs/security-tests.md). Each asserts no panic and, for every accepted input, that encoding
// the decoded value gives back the input bytes. Their seeds (valid objects and mutations of
// them) run in plain `go test`; a brief fuzz run:
// go test -run=^$ -fuzz=^FuzzOpenContent$ -fuzztime=10s ./dedup/

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

var fuzzKey = testCS(0x5a) // fixed content/metadata key of the fuzz targets

// mutations returns obj plus a bit flip in the header, one in the body, a truncation and
// an extension: seeds near the valid inputs.
func mutations(obj []byte) [][]byte {
	out := [][]byte{obj}
	for _, at := range []int{3, len(obj) / 2, len(obj) - 1} {
		if at >= 0 && at < len(obj) {
			m := bytes.Clone(obj)
			m[at] ^= 0x10
			out = append(out, m)
		}
	}
	if len(obj) > 0 {
		out = append(out, obj[:len(obj)-1])
	}
	return append(out, append(bytes.Clone(obj), 0))
}

// sealContentKey seals p under content key kc (the second pass of Seal).
func sealContentKey(t testing.TB, kc []byte, p []byte) []byte {
	var buf bytes.Buffer
	if _, _, err := sealWithKey(kc, bytes.NewReader(p), int64(len(p)), &buf, make([]byte, segSize+tagSize)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var fuzzSizes = []int{0, 1, 17, 1000, segSize - innerLen, segSize + 5}

// FuzzOpenContent (T28/T29): arbitrary object bytes and declared size, opened with a fixed
// content key by Open, OpenReader and OpenVerifiedReader (locator = SHA-256 of the input,
// so the decoder itself is exercised).
func FuzzOpenContent(f *testing.F) {
	for _, n := range fuzzSizes {
		obj := sealContentKey(f, fuzzKey, randBytes(uint64(n), n))
		for _, m := range mutations(obj) {
			f.Add(m, int64(n))
		}
	}
	f.Add([]byte{}, int64(-1))
	f.Add(contentHeader[:], int64(1<<40))
	f.Fuzz(func(t *testing.T, obj []byte, size int64) {
		ref := Ref{Locator: Hash(obj), Key: fuzzKey, Size: size}
		out, err := Open(ref, obj)
		ra, rerr := OpenReader(ref, bytes.NewReader(obj), int64(len(obj)))
		var got []byte
		if rerr == nil {
			got, rerr = io.ReadAll(io.NewSectionReader(ra, 0, size))
		}
		if (err == nil) != (rerr == nil) {
			t.Fatalf("Open err=%v but OpenReader+read err=%v", err, rerr)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(out, got) {
			t.Fatal("Open and OpenReader disagree")
		}
		if _, err := OpenVerifiedReader(ref, bytes.NewReader(obj), int64(len(obj))); err != nil {
			t.Fatalf("OpenVerifiedReader rejects what Open accepts: %v", err)
		}
		if re := sealContentKey(t, fuzzKey, out); !bytes.Equal(re, obj) {
			t.Fatal("accepted object does not re-encode to the same bytes")
		}
	})
}

// sealStreamRaw encrypts an arbitrary stream (not necessarily a valid inner layout) as a
// content object under kc, as a store that knows K_c could.
func sealStreamRaw(kc []byte, stream []byte) []byte {
	prefix := append(bytes.Clone(contentHeader[:]), hmacSHA256(hkdf32(kc, nil, "imgfs v1 content commit"), contentHeader[:])...)
	st := newStream(newGCM(hkdf32(kc, nil, "imgfs v1 content enc")), prefix, contentStart, int64(len(stream)))
	obj := bytes.Clone(prefix)
	for i := int64(0); i < st.n; i++ {
		obj = st.sealSeg(obj, stream[i*segSize:min(int64(len(stream)), (i+1)*segSize)], i)
	}
	return obj
}

// FuzzContentStream (T30): arbitrary decrypted stream bytes (inner length word, reserved
// word, payload, padding) under valid encryption; the inner-length and padding checks
// must reject every stream Seal would not produce.
func FuzzContentStream(f *testing.F) {
	for _, n := range fuzzSizes[:5] {
		var obj bytes.Buffer
		sealWithKey(fuzzKey, bytes.NewReader(randBytes(9, n)), int64(n), &obj, make([]byte, segSize+tagSize))
		stream, err := Open(Ref{Hash(obj.Bytes()), fuzzKey, int64(n)}, obj.Bytes())
		if err != nil {
			f.Fatal(err)
		}
		full := make([]byte, streamLen(int64(n)))
		binary.BigEndian.PutUint64(full, uint64(n))
		copy(full[innerLen:], stream)
		for _, m := range mutations(full) {
			f.Add(m, int64(n))
		}
	}
	f.Fuzz(func(t *testing.T, stream []byte, size int64) {
		if len(stream) == 0 || len(stream) > 4*segSize {
			return
		}
		obj := sealStreamRaw(fuzzKey, stream)
		ref := Ref{Locator: Hash(obj), Key: fuzzKey, Size: size}
		out, err := Open(ref, obj)
		if err != nil {
			return
		}
		if re := sealContentKey(t, fuzzKey, out); !bytes.Equal(re, obj) {
			t.Fatal("accepted stream does not re-encode to the same object")
		}
	})
}

// FuzzOpenMeta (T31 container, T34): arbitrary metadata object bytes under a fixed
// metadata key and kind.
func FuzzOpenMeta(f *testing.F) {
	for _, n := range fuzzSizes {
		obj, _, err := SealMeta(fuzzKey, "tree", randBytes(uint64(n), n))
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range mutations(obj) {
			f.Add(m)
		}
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		out, err := OpenMeta(fuzzKey, "tree", Hash(obj), obj)
		if err != nil {
			return
		}
		re, err := sealMetaSalt(fuzzKey, kindMeta, "tree", "", out, obj[16:metaHeaderLen])
		if err != nil || !bytes.Equal(re, obj) {
			t.Fatalf("accepted metadata object does not re-encode: %v", err)
		}
	})
}

// sealMetaStreamRaw encrypts an arbitrary stream as a metadata object (salt fixed).
func sealMetaStreamRaw(key []byte, kindByte byte, kind, name string, stream []byte) []byte {
	fixed := metaFixed(kindByte)
	hdr := append(fixed[:], make([]byte, saltLen)...)
	kenc, kcom := metaKeys(key, hdr[16:], kind)
	ctx := metaCtx(kind, name)
	aad := append(append(bytes.Clone(hdr), hmacSHA256(kcom, hdr, ctx)...), ctx...)
	st := newStream(newGCM(kenc), aad, metaStart, int64(len(stream)))
	obj := bytes.Clone(aad[:metaStart])
	for i := int64(0); i < st.n; i++ {
		obj = st.sealSeg(obj, stream[i*segSize:min(int64(len(stream)), (i+1)*segSize)], i)
	}
	return obj
}

// FuzzMetaStream (T30 for metadata and roots): arbitrary decrypted streams under valid
// encryption; only canonical inner length + zero padding may be accepted.
func FuzzMetaStream(f *testing.F) {
	for _, n := range fuzzSizes[:5] {
		full := make([]byte, streamLen(int64(n)))
		binary.BigEndian.PutUint64(full, uint64(n))
		copy(full[innerLen:], randBytes(3, n))
		for _, m := range mutations(full) {
			f.Add(m, false)
			f.Add(m, true)
		}
	}
	f.Fuzz(func(t *testing.T, stream []byte, root bool) {
		if len(stream) == 0 || len(stream) > 4*segSize {
			return
		}
		if root {
			obj := sealMetaStreamRaw(fuzzKey, kindRoot, rootKind, RootName(7), stream)
			out, err := OpenRoot(fuzzKey, 7, obj)
			if err != nil {
				return
			}
			if re, err := sealMetaSalt(fuzzKey, kindRoot, rootKind, RootName(7), out, obj[16:metaHeaderLen]); err != nil || !bytes.Equal(re, obj) {
				t.Fatalf("accepted root stream does not re-encode: %v", err)
			}
			return
		}
		obj := sealMetaStreamRaw(fuzzKey, kindMeta, "tree", "", stream)
		out, err := OpenMeta(fuzzKey, "tree", Hash(obj), obj)
		if err != nil {
			return
		}
		if re, err := sealMetaSalt(fuzzKey, kindMeta, "tree", "", out, obj[16:metaHeaderLen]); err != nil || !bytes.Equal(re, obj) {
			t.Fatalf("accepted metadata stream does not re-encode: %v", err)
		}
	})
}

// FuzzOpenRoot (T33): arbitrary root pointer bytes and sequence number.
func FuzzOpenRoot(f *testing.F) {
	for _, n := range []int{0, 1, 80, 200} {
		obj, _, err := SealRoot(fuzzKey, uint64(n), randBytes(uint64(n), n))
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range mutations(obj) {
			f.Add(m, uint64(n))
			f.Add(m, uint64(n+1))
		}
	}
	f.Fuzz(func(t *testing.T, obj []byte, seq uint64) {
		out, err := OpenRoot(fuzzKey, seq, obj)
		if err != nil {
			return
		}
		re, err := sealMetaSalt(fuzzKey, kindRoot, rootKind, RootName(seq), out, obj[16:metaHeaderLen])
		if err != nil || !bytes.Equal(re, obj) {
			t.Fatalf("accepted root does not re-encode: %v", err)
		}
	})
}

// FuzzParseNames (T34): object names as a List call returns them.
func FuzzParseNames(f *testing.F) {
	l := Hash([]byte("x"))
	for _, s := range []string{ContentName(l), MetaName(l), RootName(0), RootName(1<<64 - 1), l.String(),
		"c/00/" + l.String(), "r/18446744073709551616", "r/0000000000000000000x", "C/" + l.String()[:2] + "/" + l.String(), "vault", "k/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if l, err := ParseContentName(name); err == nil && ContentName(l) != name {
			t.Fatalf("content name %q re-encodes as %q", name, ContentName(l))
		}
		if l, err := ParseMetaName(name); err == nil && MetaName(l) != name {
			t.Fatalf("meta name %q re-encodes as %q", name, MetaName(l))
		}
		if seq, err := ParseRootName(name); err == nil && RootName(seq) != name {
			t.Fatalf("root name %q re-encodes as %q", name, RootName(seq))
		}
		if l, err := ParseLocator(name); err == nil && l.String() != name {
			t.Fatalf("locator %q re-encodes as %q", name, l.String())
		}
	})
}
