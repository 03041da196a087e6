package dedup

import (
	"bytes"
	mrand "math/rand/v2"
	"testing"

	"github.com/imgfs/imgfs/dedup/keyring"
)

func testCS(b byte) keyring.Secret { return bytes.Repeat([]byte{b}, 32) }

// randBytes returns deterministic pseudo-random bytes for a seed.
func randBytes(seed uint64, n int) []byte {
	r := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// sealBytes seals p with cs and returns the object and ref.
func sealBytes(t testing.TB, cs keyring.Secret, p []byte) ([]byte, Ref) {
	t.Helper()
	var buf bytes.Buffer
	ref, err := Seal(cs, bytes.NewReader(p), int64(len(p)), &buf)
	if err != nil {
		t.Fatalf("Seal(%d bytes): %v", len(p), err)
	}
	return buf.Bytes(), ref
}
