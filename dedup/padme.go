package dedup

import "math/bits"

// Layout constants of format v1 (docs/format.md §5).
const (
	segLog2      = 16
	segSize      = 1 << segLog2 // plaintext bytes per STREAM segment (64 KiB)
	tagSize      = 16           // AES-GCM tag
	innerLen     = 16           // u64be(len(P)) || u64be(0) at the start of the stream
	headerLen    = 16           // fixed header of content objects
	commitLen    = 32           // HMAC-SHA256 key commitment
	contentStart = headerLen + commitLen

	// MaxPlainSize bounds plaintext sizes (1 TiB), so size arithmetic cannot overflow and a
	// declared length from the store cannot ask for absurd allocations.
	MaxPlainSize = 1 << 40
)

// Padme rounds l up to its Padmé class (Nikitin et al., PoPETs 2019): with E = floor(log2 l)
// and S = floor(log2 E)+1, the low E-S bits are cleared by rounding up.
func Padme(l int64) int64 {
	if l < 2 {
		return l
	}
	e := bits.Len64(uint64(l)) - 1
	s := bits.Len64(uint64(e))
	mask := int64(1)<<(e-s) - 1
	return (l + mask) &^ mask
}

// streamLen is the padded plaintext stream length for a payload of n bytes.
func streamLen(n int64) int64 { return Padme(n + innerLen) }

// segments returns the number of STREAM segments for a stream of sl bytes.
func segments(sl int64) int64 { return (sl + segSize - 1) / segSize }

// ObjectSize is the stored size of a content object for a plaintext of plainSize bytes,
// or -1 when plainSize is negative or above MaxPlainSize.
func ObjectSize(plainSize int64) int64 {
	if plainSize < 0 || plainSize > MaxPlainSize {
		return -1
	}
	sl := streamLen(plainSize)
	return contentStart + sl + segments(sl)*tagSize
}
