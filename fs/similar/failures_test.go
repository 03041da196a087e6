package similar

import (
	"strings"
	"testing"
)

func TestFailureRecord(t *testing.T) {
	r := failureRecord{Model: "m@1", Reason: "imgdecode: jpeg: corrupt or truncated image"}
	got, err := decodeFailure(encodeFailure(r))
	if err != nil || got != r {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	long := failureRecord{Model: "m", Reason: strings.Repeat("x", 5000)}
	if got, err := decodeFailure(encodeFailure(long)); err != nil || len(got.Reason) != maxReasonLen {
		t.Fatalf("a long reason is cut to %d bytes: %d %v", maxReasonLen, len(got.Reason), err)
	}
	// Cut inside a rune, or holding invalid UTF-8: still read back as written.
	for _, reason := range []string{"x" + strings.Repeat("é", 400), strings.Repeat("\xff", 400), "bad \xc3 byte"} {
		want := cutReason(reason)
		if got, err := decodeFailure(encodeFailure(failureRecord{Model: "m", Reason: reason})); err != nil || got.Reason != want {
			t.Fatalf("reason %.20q: read back %.20q, %v; want %.20q", reason, got.Reason, err, want)
		}
	}
	for _, bad := range []string{"", "{", "null", `{"model":"m"}`, `{"reason":7}`, `{"model":"m","reason":"` + strings.Repeat("y", 400) + `"}`} {
		if _, err := decodeFailure([]byte(bad)); err == nil {
			t.Errorf("decodeFailure(%.40q) accepted", bad)
		}
	}
	for name, want := range map[string]bool{"a/IMG_1.JPG": true, "x.heic": true, "raw/a.CR2": true, "notes.txt": false, "jpg": false, "a.jpg.bak": false} {
		if namedLikeImage(name) != want {
			t.Errorf("namedLikeImage(%q) != %v", name, want)
		}
	}
}

// FuzzDecodeFailure: the failure record is read back from the vault's aux table.
func FuzzDecodeFailure(f *testing.F) {
	f.Add(encodeFailure(failureRecord{Model: "mobilenet_v2@bb893ae30331", Reason: "too many pixels"}))
	f.Add([]byte(`{"model":"","reason":"x"}`))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeFailure(b)
		if err != nil {
			return
		}
		if r.Reason == "" || len(r.Reason) > maxReasonLen {
			t.Fatalf("accepted a bad reason: %q", r.Reason)
		}
		again, err := decodeFailure(encodeFailure(r))
		if err != nil || again != r {
			t.Fatalf("re-encoding %+v: %+v %v", r, again, err)
		}
	})
}
