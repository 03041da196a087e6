package main

import (
	"strings"
	"testing"
)

// Usage errors of imgfs review and imgfs similar --mark/--unmark/--marks exit 2 with one
// line; outside a mount they say so (exit 1). The working commands are tested through a
// real mount in integration/review_test.go.
func TestReviewAndMarkUsage(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"review", "a", "b"}, exitUsage, "takes 0 to 1 arguments"},
		{[]string{"similar", "--mark", "a.jpg"}, exitUsage, "--mark takes two PATHs"},
		{[]string{"similar", "--mark", "a", "b", "c"}, exitUsage, "--mark takes two PATHs"},
		{[]string{"similar", "--unmark"}, exitUsage, "--unmark takes at least one PATH"},
		{[]string{"similar", "--marks", "a", "b"}, exitUsage, "--marks takes at most one MOUNTPOINT"},
		{[]string{"similar", "--mark", "--unmark", "a", "b"}, exitUsage, "exclude each other"},
		{[]string{"review", "."}, 1, "is not inside an imgfs mount"},
		{[]string{"similar", "--marks", "."}, 1, "is not inside an imgfs mount"},
		{[]string{"similar", "--unmark", "x.jpg"}, 1, "is not inside an imgfs mount"},
	} {
		r := e.run(nil, c.args...)
		if r.code != c.code || !strings.Contains(oneErrorLine(t, r), c.want) {
			t.Errorf("imgfs %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), r.code, r.stderr, c.code, c.want)
		}
	}
}
