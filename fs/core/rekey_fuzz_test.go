package core

import (
	"bytes"
	"testing"

	"github.com/imgfs/imgfs/dedup"
)

// FuzzDecodeCheckpoint: the rekey checkpoint decoder (a stored metadata plaintext). No
// panic; an accepted input re-encodes to itself.
func FuzzDecodeCheckpoint(f *testing.F) {
	var l1, l2 dedup.Locator
	l1[0], l2[0] = 1, 2
	key := bytes.Repeat([]byte{9}, 32)
	f.Add(encodeCheckpoint(nil))
	f.Add(encodeCheckpoint(map[dedup.Locator]dedup.Content{
		l1:  dedup.NewContent(dedup.Ref{Locator: l2, Key: key, Size: 10}),
		l2:  dedup.NewContent(dedup.Ref{Locator: l1, Key: key, Size: 2 << 20}, dedup.Ref{Locator: l2, Key: key, Size: 5}),
		{3}: {},
	}))
	f.Add([]byte(checkpointMagic + "\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeCheckpoint(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeCheckpoint(m), b) {
			t.Fatal("accepted checkpoint does not re-encode to the same bytes")
		}
	})
}
