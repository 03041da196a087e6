package dedup

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/imgfs/imgfs/dedup/internal/memstore"
	"github.com/imgfs/imgfs/dedup/leakscan"
)

// f16 converts to IEEE half precision (round toward zero; enough to serialise test vectors).
func f16(f float32) uint16 {
	b := math.Float32bits(f)
	sign, exp, man := uint16(b>>16)&0x8000, int(b>>23&0xff)-127+15, b&0x7fffff
	switch {
	case exp <= 0:
		return sign
	case exp >= 31:
		return sign | 0x7c00
	}
	return sign | uint16(exp)<<10 | uint16(man>>13)
}

// TestEmbeddingsSealed is T6 at this layer: embedding vectors (864-d, as the embed recipe
// produces) sealed in "emb" metadata objects leave no 16-byte window of their float32 or
// float16 serialisation and no two adjacent float32 components in any stored byte, and
// no more single 4-byte components than chance allows; the same scan finds the vectors
// when one is stored in clear (positive control).
//
// Sealed objects use fresh random nonces, so a lone 4-byte component turns up by chance
// in about one run in twelve (≈50 KB scanned against ≈6900 components: expected
// 50e3*6900/2^32 ≈ 0.08). Five or more is a leak with odds of chance below 1e-7.
func TestEmbeddingsSealed(t *testing.T) {
	st := memstore.New()
	mk := testCS(10)
	s := leakscan.New()
	components := map[[4]byte]bool{}
	var plainVec []byte
	for v := range 8 {
		r := randBytes(uint64(200+v), 864*2)
		var f32, f16b bytes.Buffer
		for i := range 864 {
			x := (float32(binary.LittleEndian.Uint16(r[2*i:]))/65535 - 0.5) * 3
			binary.Write(&f32, binary.LittleEndian, x)
			binary.Write(&f16b, binary.LittleEndian, f16(x))
			var c [4]byte
			binary.LittleEndian.PutUint32(c[:], math.Float32bits(x))
			if x != 0 {
				components[c] = true
			}
		}
		s.AddPlaintext("emb float32", f32.Bytes())
		s.AddPlaintext("emb float16", f16b.Bytes())
		obj, loc, err := SealMeta(mk, "emb", append(f32.Bytes(), f16b.Bytes()...))
		if err != nil {
			t.Fatal(err)
		}
		st.SetRaw(MetaName(loc), obj)
		plainVec = f32.Bytes()
	}
	const maxChanceComponents = 4
	scan := func() (windows, floats, pairs int) {
		for _, name := range st.Names("") {
			b := st.Raw(name)
			windows += len(s.ScanBytes(name, b)) + len(s.ScanName(name))
			for i := 0; i+4 <= len(b); i++ {
				if components[[4]byte(b[i:i+4])] {
					floats++
					if i+8 <= len(b) && components[[4]byte(b[i+4:i+8])] {
						pairs++
					}
				}
			}
		}
		return
	}
	if w, f, p := scan(); w != 0 || p != 0 || f > maxChanceComponents {
		t.Fatalf("sealed embeddings: %d window hits, %d adjacent float32 pairs, %d float32 components found (chance allows %d)",
			w, p, f, maxChanceComponents)
	}
	st.SetRaw("m/00/plain", plainVec)
	if w, f, p := scan(); w == 0 || f < 864 || p < 863 {
		t.Fatalf("positive control: %d window hits, %d components, %d adjacent pairs", w, f, p)
	}
}
