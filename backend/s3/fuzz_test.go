package s3

import (
	"strings"
	"testing"

	"github.com/imgfs/imgfs/backend"
)

// FuzzParseURL: ParseURL never panics, and what it accepts has an endpoint, a bucket and a
// prefix that is "" or a valid object-name path.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3:http://127.0.0.1:7070/b", "s3:https://h/b/p/q?region=x", "s3://b", "s3:http://u:p@h/b",
		"s3:http://h/b/../x", "s3:http://[::1]:1/b", "s3:http://h/b?region=1&x=2", "s3:http:/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := ParseURL(raw)
		if err != nil {
			return
		}
		if c.Endpoint == "" || c.Bucket == "" || strings.Contains(c.Bucket, "/") {
			t.Fatalf("%q accepted as %+v", raw, c)
		}
		if c.Prefix != "" && backend.ValidName(c.Prefix) != nil {
			t.Fatalf("%q accepted with prefix %q", raw, c.Prefix)
		}
	})
}

// FuzzContentRange: parseContentRange never panics and accepts only consistent ranges.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-104/70000", "bytes */10", "bytes 9-0/10", "bytes 0-10/10", "", "bytes -1-2/3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		start, stop, total, ok := parseContentRange(v)
		if ok && !(0 <= start && start <= stop && stop < total) {
			t.Fatalf("%q accepted as %d-%d/%d", v, start, stop, total)
		}
	})
}
