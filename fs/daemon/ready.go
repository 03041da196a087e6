package daemon

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// Readiness is the daemon's side of the readiness pipe (spawn.go): exactly once, zero or more
// "note <text>" lines (things the user of imgfs mount should know, such as an index that is
// off), then "ready" or "error <exit code> <message>". A nil *Readiness (a mount started with
// -f by hand) reports nothing.
type Readiness struct {
	f    *os.File
	once sync.Once
}

// NewReadiness reports on f, which it closes after reporting.
func NewReadiness(f *os.File) *Readiness { return &Readiness{f: f} }

// Ready reports the notes, then "ready".
func (r *Readiness) Ready(notes []string) { r.report(notes, "ready") }

// Fail reports that the mount did not start: exit code and message. A no-op after Ready.
func (r *Readiness) Fail(code int, err error) {
	r.report(nil, fmt.Sprintf("error %d %s", code, oneLine(err.Error())))
}

func (r *Readiness) report(notes []string, last string) {
	if r == nil || r.f == nil {
		return
	}
	r.once.Do(func() {
		for _, n := range notes {
			fmt.Fprintln(r.f, "note "+oneLine(n))
		}
		fmt.Fprintln(r.f, last)
		r.f.Close()
	})
}

// oneLine keeps a message on one line of the readiness protocol.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "; ")
}
