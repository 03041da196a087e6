package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// Journal record operations. Every record is written and fsynced to a file outside the mount
// before (A) or after (C, F, G) the call it describes, so the journal always over-approximates
// what the file system may show after a crash and never claims an acknowledgement that the
// file system did not give.
const (
	opAttempt = "A" // a write of this content to this path is about to start
	opClose   = "C" // close(2) (or rename(2)) returned 0: content is close-acknowledged
	opFsync   = "F" // fsync(2) returned 0: content is fsync-acknowledged
	opGone    = "G" // the path was renamed away; flag "c" close-level, "f" fsync-level
)

// record is one journal line: op, path (relative to the driver's root), sha256 hex, flags.
// Flags on A: "t" = the attempt may expose an empty file (O_CREAT or O_TRUNC on open);
// "r" = the path is being renamed away (absence becomes allowed; no content is attempted).
// Flags on G: "c" or "f" = the acknowledgement level of the removal.
type record struct {
	Op    string
	Path  string
	SHA   string
	Flags string
}

// journal appends records to a file and fsyncs after each one.
type journal struct {
	mu sync.Mutex
	f  *os.File
}

func openJournal(path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &journal{f: f}, nil
}

func (j *journal) add(r record) error {
	if strings.ContainsAny(r.Path, "\t\n") {
		return fmt.Errorf("journal: bad path %q", r.Path)
	}
	line := fmt.Sprintf("%s\t%s\t%s\t%s\n", r.Op, r.Path, r.SHA, r.Flags)
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.WriteString(line); err != nil {
		return err
	}
	return j.f.Sync()
}

func (j *journal) Close() error { return j.f.Close() }

// readJournal parses a journal file. A torn last line (the driver itself killed mid-write)
// is ignored: its record was never fsynced, so nothing may depend on it.
func readJournal(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []record
	br := bufio.NewReader(f)
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			// A line without its newline is torn and ignored.
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		parts := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(parts) != 4 {
			return nil, fmt.Errorf("journal %s: malformed line %q", path, line)
		}
		out = append(out, record{Op: parts[0], Path: parts[1], SHA: parts[2], Flags: parts[3]})
	}
}
