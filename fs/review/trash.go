package review

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/imgfs/imgfs/fs/similar"
)

// moveToTrash renames each file (slash paths from the mount root) to
// TrashDir/<UTC time>/<its path> inside the mount: a rename inside the vault, so nothing
// is copied or decrypted, and `mv` back restores it (docs/review.md, "Trash"). A name
// already taken in the trash gets "~2", "~3", ... before its extension. It stops at the
// first error and returns what it moved.
func moveToTrash(root *os.Root, rels []string, now time.Time) ([]Moved, error) {
	stamp := now.UTC().Format("20060102-150405")
	var moved []Moved
	for _, rel := range rels {
		st, err := root.Lstat(rel)
		if err != nil {
			return moved, fmt.Errorf("%s: %s", rel, cleanErr(err))
		}
		if !st.Mode().IsRegular() {
			return moved, fmt.Errorf("%s: not a regular file", rel)
		}
		dst := path.Join(similar.TrashDir, stamp, rel)
		if err := root.MkdirAll(path.Dir(dst), 0o700); err != nil {
			return moved, fmt.Errorf("%s: %s", path.Dir(dst), cleanErr(err))
		}
		dst, err = freeName(root, dst)
		if err != nil {
			return moved, err
		}
		if err := root.Rename(rel, dst); err != nil {
			return moved, fmt.Errorf("%s: %s", rel, cleanErr(err))
		}
		moved = append(moved, Moved{rel, dst})
	}
	return moved, nil
}

// freeName returns p, or the first of stem~2.ext, stem~3.ext, ... that does not exist.
func freeName(root *os.Root, p string) (string, error) {
	ext := path.Ext(p)
	if strings.HasPrefix(path.Base(p), ".") && strings.Count(path.Base(p), ".") == 1 {
		ext = ""
	}
	stem := strings.TrimSuffix(p, ext)
	for i := 1; i < 10000; i++ {
		q := p
		if i > 1 {
			q = fmt.Sprintf("%s~%d%s", stem, i, ext)
		}
		if _, err := root.Lstat(q); errors.Is(err, fs.ErrNotExist) {
			return q, nil
		} else if err != nil {
			return "", fmt.Errorf("%s: %s", q, cleanErr(err))
		}
	}
	return "", fmt.Errorf("%s: no free name in the trash", p)
}
