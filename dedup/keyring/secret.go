package keyring

import (
	"fmt"
	"io"
)

const redacted = "[redacted]"

// String prints [redacted].
func (s Secret) String() string { return redacted }

// GoString prints [redacted] (%#v).
func (s Secret) GoString() string { return redacted }

// Format prints [redacted] for every verb (%v %+v %#v %s %q %x %X %d ...), so key
// bytes cannot reach a log line through fmt, even inside a struct.
func (s Secret) Format(f fmt.State, verb rune) { io.WriteString(f, redacted) }

// MarshalJSON encodes as the JSON string "[redacted]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText encodes as "[redacted]" (also used by encoding/xml and slog's text handler).
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Wipe zeroes the bytes (best effort: Go may have copied them).
func (s Secret) Wipe() { clear(s) }

// Wipe zeroes every key (best effort).
func (k *Keys) Wipe() {
	if k == nil {
		return
	}
	for _, s := range []Secret{k.MasterKey, k.ConvergenceSecret, k.MetaKey, k.HeaderKey, k.LocalKey} {
		s.Wipe()
	}
}
