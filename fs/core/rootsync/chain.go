package rootsync

import (
	"fmt"

	"github.com/imgfs/imgfs/dedup"
)

// CheckLink checks that the root after root seq (whose object hash is h) names h as its
// predecessor. A root that does not is a fork or a replaced root: the caller refuses it as a
// rollback (docs/core.md, "Open: empty cache, rollback, crash recovery").
func CheckLink(seq uint64, h, nextPrev dedup.Locator) error {
	if nextPrev != h {
		return fmt.Errorf("root %d does not chain to root %d", seq+1, seq)
	}
	return nil
}
