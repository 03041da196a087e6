package dedup

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"

	"github.com/imgfs/imgfs/dedup/keyring"
)

// Content-defined chunking for format v2 (docs/format.md §11).
//
// A cut may fall only at a candidate position: one where a public, unkeyed gear hash of the
// 64 bytes before it has its top candidateBits bits zero (about one position in 256). A
// candidate becomes a cut when a PRF keyed by the chunker key says so:
//
//	v = AES-256(K_chunk, u64be(gear) || u64be(0))[0:8] as u64be
//	cut  iff  v < 2^(64-14) while the chunk would be shorter than ChunkNormal,
//	          v < 2^(64-12) from ChunkNormal on
//
// (normalised chunking as in FastCDC: fewer very short and very long chunks, so fewer cuts
// forced at ChunkMax, which are not content-defined). K_chunk = HKDF(CS, nil, "imgfs v2
// chunker"), so it follows the convergence mode. The key enters nothing but AES used as a
// PRF, so the cuts of a known file reveal only PRF output bits, never a linear image of the
// key (the weakness of keyed gear/buzhash tables and secret Rabin polynomials). The first
// cut is searched in (ChunkMin, ChunkMax]; a chunk that finds none is cut at ChunkMax; the
// last chunk of a file ends at its end.
const (
	ChunkMin    = 1 << 20 // no chunk (but a file's last) is shorter
	ChunkNormal = 3 << 20 // the cut test loosens from this length on
	ChunkMax    = 8 << 20 // no chunk is longer

	chunkWindow   = 64 // bytes the gear hash depends on (64-bit shift register)
	candidateBits = 8
	prfBitsBefore = 14 // below ChunkNormal: a cut every 2^(8+14) bytes = 4 MiB on average
	prfBitsAfter  = 12 // from ChunkNormal on: every 1 MiB
)

// gearTable is public: 256 words from SHA-256("imgfs v2 chunker gear" || byte).
var gearTable = func() (t [256]uint64) {
	for i := range t {
		h := sha256.Sum256(append([]byte("imgfs v2 chunker gear"), byte(i)))
		t[i] = binary.BigEndian.Uint64(h[:8])
	}
	return t
}()

// Chunker finds chunk boundaries. It is safe for concurrent use.
type Chunker struct {
	block cipher.Block
}

// ChunkerKey derives K_chunk from the convergence secret.
func ChunkerKey(cs keyring.Secret) keyring.Secret { return hkdf32(cs, nil, "imgfs v2 chunker") }

// NewChunker returns the chunker of the vault whose convergence secret is cs.
func NewChunker(cs keyring.Secret) (*Chunker, error) {
	if len(cs) != 32 {
		return nil, errors.New("dedup: convergence secret must be 32 bytes")
	}
	b, err := aes.NewCipher(ChunkerKey(cs))
	if err != nil {
		return nil, err
	}
	return &Chunker{block: b}, nil
}

// prf is the keyed value of a candidate with gear value g.
func (c *Chunker) prf(g uint64) uint64 {
	var blk [16]byte
	binary.BigEndian.PutUint64(blk[:8], g)
	c.block.Encrypt(blk[:], blk[:])
	return binary.BigEndian.Uint64(blk[:8])
}

// Cut returns the length of the first chunk of b, which starts at a chunk boundary. final
// says that b ends the file. ok is false when more bytes are needed to decide (b is
// shorter than ChunkMax, has no cut, and is not final).
func (c *Chunker) Cut(b []byte, final bool) (n int, ok bool) { return c.CutFrom(b, 0, final) }

// CutFrom is Cut when an earlier call found no cut in b[:from] (a caller that reads ahead
// in steps): only the new bytes are scanned.
func (c *Chunker) CutFrom(b []byte, from int, final bool) (n int, ok bool) {
	if len(b) <= ChunkMin {
		return len(b), final
	}
	end := min(len(b), ChunkMax)
	start := min(max(from, ChunkMin), end)
	var g uint64
	for _, x := range b[start-chunkWindow : start] {
		g = g<<1 + gearTable[x]
	}
	for i := start; i < end; i++ {
		g = g<<1 + gearTable[b[i]]
		if g>>(64-candidateBits) == 0 {
			bits := prfBitsBefore
			if i+1 >= ChunkNormal {
				bits = prfBitsAfter
			}
			if c.prf(g)>>(64-bits) == 0 {
				return i + 1, true
			}
		}
	}
	if end == ChunkMax || final {
		return end, true
	}
	return 0, false
}

// Split returns the chunk lengths of a whole file held in memory.
func (c *Chunker) Split(b []byte) []int {
	var out []int
	for len(b) > 0 {
		n, _ := c.Cut(b, true)
		out = append(out, n)
		b = b[n:]
	}
	return out
}
