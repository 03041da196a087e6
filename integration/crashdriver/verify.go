package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Verification levels: what survives which kind of crash (docs/core.md, "What Flush,
// Fsync, Sync and Close guarantee").
const (
	// levelClose: the daemon was killed, the local spool and journal were kept. Every
	// close-acknowledged (and fsync-acknowledged) version must be there.
	levelClose = "close"
	// levelFsync: the daemon was killed and the whole local cache (spool, journal, working
	// copy) was wiped, as if the machine was lost. Only fsync-acknowledged versions count.
	levelFsync = "fsync"
)

// allowedState is what one path may look like after the crash.
type allowedState struct {
	absent bool
	shas   map[string]bool
}

func (a allowedState) String() string {
	var s []string
	if a.absent {
		s = append(s, "absent")
	}
	for _, k := range sortedKeys(a.shas) {
		if k == emptySHA {
			s = append(s, "empty")
		} else {
			s = append(s, short(k))
		}
	}
	return fmt.Sprint(s)
}

// countsAsAck reports whether r acknowledges content (or removal) at this level.
func countsAsAck(r record, level string) bool {
	switch r.Op {
	case opFsync:
		return true
	case opClose:
		return level == levelClose
	case opGone:
		return level == levelClose || r.Flags == "f"
	}
	return false
}

// allowedStates computes, for every path in the journal, the states allowed after a crash:
// the last acknowledged version (or absence, when the path was acknowledged as renamed away,
// or was never acknowledged at all), plus every version attempted or acknowledged after it,
// and the empty file after an attempt that opened with O_CREAT or O_TRUNC. Any other content,
// e.g. a mix of an old and a new version or a torn write, is a failure.
func allowedStates(recs []record, level string) map[string]allowedState {
	byPath := map[string][]record{}
	for _, r := range recs {
		byPath[r.Path] = append(byPath[r.Path], r)
	}
	out := map[string]allowedState{}
	for p, evs := range byPath {
		last := -1
		for i, r := range evs {
			if countsAsAck(r, level) {
				last = i
			}
		}
		a := allowedState{shas: map[string]bool{}}
		switch {
		case last < 0:
			a.absent = true
		case evs[last].Op == opGone:
			a.absent = true
		default:
			a.shas[evs[last].SHA] = true
		}
		for _, r := range evs[last+1:] {
			switch r.Op {
			case opAttempt:
				if r.Flags == "r" {
					a.absent = true
					continue
				}
				a.shas[r.SHA] = true
				if r.Flags == "t" {
					a.shas[emptySHA] = true
				}
			case opClose, opFsync:
				a.shas[r.SHA] = true
			case opGone:
				a.absent = true
			}
		}
		out[p] = a
	}
	return out
}

// scanTree returns the sha256 of every regular file under root (relative paths). Read errors
// and entries other than directories and regular files are reported as problems.
func scanTree(root string) (map[string]string, []string) {
	files := map[string]string{}
	var problems []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			problems = append(problems, fmt.Sprintf("walk %s: %v", p, err))
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.IsDir():
			return nil
		case d.Type().IsRegular():
			sum, err := hashFile(p)
			if err != nil {
				problems = append(problems, fmt.Sprintf("read %s: %v", rel, err))
				return nil
			}
			files[rel] = sum
		default:
			problems = append(problems, fmt.Sprintf("unexpected entry %s (%v)", rel, d.Type()))
		}
		return nil
	})
	if err != nil {
		problems = append(problems, fmt.Sprintf("walk %s: %v", root, err))
	}
	return files, problems
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// verifyStats summarises one verification.
type verifyStats struct {
	Paths      int // paths in the journal
	Present    int // files found
	AckedClose int // paths whose last close-level ack is the content found
	AckedFsync int // paths whose last fsync ack is the content found
	Newer      int // files showing an unacknowledged newer version (allowed)
	Empty      int // files empty after an unacknowledged O_CREAT/O_TRUNC (allowed)
}

// checkTree compares the files found (from scanTree) with the journal at the given level.
func checkTree(files map[string]string, recs []record, level string) (verifyStats, []string) {
	var st verifyStats
	var problems []string
	allowed := allowedStates(recs, level)
	lastAck := map[string]map[string]string{levelClose: {}, levelFsync: {}}
	for _, r := range recs {
		switch r.Op {
		case opClose:
			lastAck[levelClose][r.Path] = r.SHA
		case opFsync:
			lastAck[levelFsync][r.Path] = r.SHA
			lastAck[levelClose][r.Path] = r.SHA
		case opGone:
			delete(lastAck[levelClose], r.Path)
			if r.Flags == "f" {
				delete(lastAck[levelFsync], r.Path)
			}
		}
	}
	st.Paths = len(allowed)
	for _, p := range sortedKeys(allowed) {
		a := allowed[p]
		sum, ok := files[p]
		if !ok {
			if !a.absent {
				problems = append(problems, fmt.Sprintf("%s: missing, allowed %v", p, a))
			}
			continue
		}
		st.Present++
		if !a.shas[sum] {
			what := short(sum)
			if sum == emptySHA {
				what = "empty"
			}
			problems = append(problems, fmt.Sprintf("%s: content %s is no acknowledged or attempted version, allowed %v", p, what, a))
			continue
		}
		switch {
		case lastAck[levelFsync][p] == sum:
			st.AckedFsync++
			st.AckedClose++
		case lastAck[levelClose][p] == sum:
			st.AckedClose++
		case sum == emptySHA:
			st.Empty++
		default:
			st.Newer++
		}
	}
	var extra []string
	for p := range files {
		if _, ok := allowed[p]; !ok {
			extra = append(extra, p)
		}
	}
	sort.Strings(extra)
	for _, p := range extra {
		problems = append(problems, fmt.Sprintf("%s: file that no writer created", p))
	}
	return st, problems
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
