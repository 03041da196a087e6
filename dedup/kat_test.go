package dedup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the known-answer vectors in testdata/kat.json")

// katPlain is the documented test plaintext: byte i = (7*i + 3) mod 251.
func katPlain(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((7*i + 3) % 251)
	}
	return b
}

// katCS is the documented test secret: bytes 0x00..0x1f.
func katCS() []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

type katVector struct {
	Kind      string `json:"kind"` // content | meta | root
	Size      int    `json:"size"`
	Seq       uint64 `json:"seq,omitempty"`
	Key       string `json:"key"` // K_c (content) or K_meta (meta, root), hex
	Salt      string `json:"salt,omitempty"`
	Locator   string `json:"locator"`
	ObjectLen int    `json:"object_len"`
	ObjectSHA string `json:"object_sha256"`
	Object    string `json:"object,omitempty"` // full hex for small objects
}

func katCompute(t *testing.T) []katVector {
	var out []katVector
	for _, n := range []int{0, 1, 17, 100, segSize - 16, segSize, 200_000} {
		obj, ref := sealBytes(t, katCS(), katPlain(n))
		v := katVector{Kind: "content", Size: n, Key: hex.EncodeToString(ref.Key), Locator: ref.Locator.String(), ObjectLen: len(obj)}
		s := sha256.Sum256(obj)
		v.ObjectSHA = hex.EncodeToString(s[:])
		if len(obj) <= 1024 {
			v.Object = hex.EncodeToString(obj)
		}
		out = append(out, v)
	}
	salt := bytes.Repeat([]byte{0xa5}, saltLen)
	for _, n := range []int{0, 40, 70_000} {
		for _, kind := range []string{"tree", "root"} {
			var obj []byte
			var err error
			v := katVector{Kind: "meta", Size: n, Key: hex.EncodeToString(katCS()), Salt: hex.EncodeToString(salt)}
			if kind == "root" {
				v.Kind, v.Seq = "root", 12345
				obj, err = sealMetaSalt(katCS(), kindRoot, rootKind, RootName(v.Seq), katPlain(n), salt)
			} else {
				obj, err = sealMetaSalt(katCS(), kindMeta, kind, "", katPlain(n), salt)
			}
			if err != nil {
				t.Fatal(err)
			}
			v.Locator, v.ObjectLen = Hash(obj).String(), len(obj)
			v.ObjectSHA = v.Locator
			if len(obj) <= 1024 {
				v.Object = hex.EncodeToString(obj)
			}
			// Vectors must open with the public API too.
			if kind == "root" {
				if got, err := OpenRoot(katCS(), v.Seq, obj); err != nil || !bytes.Equal(got, katPlain(n)) {
					t.Fatalf("root vector does not open: %v", err)
				}
			} else if got, err := OpenMeta(katCS(), kind, Hash(obj), obj); err != nil || !bytes.Equal(got, katPlain(n)) {
				t.Fatalf("meta vector does not open: %v", err)
			}
			out = append(out, v)
		}
	}
	return out
}

// TestKnownAnswers is T20: fixed CS + fixed P => fixed object bytes and locator, checked
// into testdata/kat.json (regenerate only for a deliberate format change: go test -run
// TestKnownAnswers -update).
func TestKnownAnswers(t *testing.T) {
	got := katCompute(t)
	path := filepath.Join("testdata", "kat.json")
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("rewrote", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate with -update)", err)
	}
	var want []katVector
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Fatalf("%d vectors in file, %d computed", len(want), len(got))
	}
	for i := range want {
		if want[i] != got[i] {
			t.Errorf("vector %d (%s, %d bytes) changed:\n got %+v\nwant %+v", i, want[i].Kind, want[i].Size, got[i], want[i])
		}
	}
	// The stored content vectors also decrypt with the stored key (independent of Seal).
	for _, v := range want {
		if v.Kind != "content" || v.Object == "" {
			continue
		}
		obj, _ := hex.DecodeString(v.Object)
		key, _ := hex.DecodeString(v.Key)
		loc, _ := ParseLocator(v.Locator)
		p, err := Open(Ref{Locator: loc, Key: key, Size: int64(v.Size)}, obj)
		if err != nil || !bytes.Equal(p, katPlain(v.Size)) {
			t.Errorf("stored vector of %d bytes does not open: %v", v.Size, err)
		}
	}
}

// TestKATPython is T20's independent check: testdata/kat_check.py re-implements format v1
// with Python's cryptography package (no code shared with Go) and must reproduce every
// vector of testdata/kat.json byte for byte. Needs python3 with cryptography
// (python3-cryptography); skipped without it, except under CI=true.
func TestKATPython(t *testing.T) {
	// Debian's interpreter first: that is where apt installs python3-cryptography, and a
	// python3 earlier on PATH (pyenv, a venv) may lack it.
	py := "/usr/bin/python3"
	err := exec.Command(py, "-c", "import cryptography").Run()
	if err != nil {
		if py, err = exec.LookPath("python3"); err == nil {
			err = exec.Command(py, "-c", "import cryptography").Run()
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 with the cryptography package is required under CI: %v", err)
		}
		t.Skipf("python3 with the cryptography package not available: %v", err)
	}
	out, err := exec.Command(py, filepath.Join("testdata", "kat_check.py")).CombinedOutput()
	if err != nil {
		t.Fatalf("kat_check.py: %v\n%s", err, out)
	}
	kat, err := os.ReadFile(filepath.Join("testdata", "kat.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Count(kat, []byte(`"kind"`))
	if n := bytes.Count(out, []byte("ok ")); n != want || want < 3 || bytes.Contains(out, []byte("FAIL")) {
		t.Fatalf("kat_check.py confirmed %d of %d vectors:\n%s", n, want, out)
	}
}
