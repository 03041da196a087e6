package dedup

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/imgfs/imgfs/dedup/internal/memstore"
	"github.com/imgfs/imgfs/dedup/leakscan"
)

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
		vec := make([]float32, 864)
		for i := range vec {
			vec[i] = (float32(binary.LittleEndian.Uint16(r[2*i:]))/65535 - 0.5) * 3
			if vec[i] != 0 {
				components[[4]byte(binary.LittleEndian.AppendUint32(nil, math.Float32bits(vec[i])))] = true
			}
		}
		f32, f16 := leakscan.VectorForms(vec)
		s.AddPlaintext("emb float32", f32)
		s.AddPlaintext("emb float16", f16)
		obj, loc, err := SealMeta(mk, "emb", append(f32, f16...))
		if err != nil {
			t.Fatal(err)
		}
		st.SetRaw(MetaName(loc), obj)
		plainVec = f32
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
