package backend

import (
	"fmt"
	"strings"
)

// MaxNameLen is the longest object name any store accepts.
const MaxNameLen = 1024

// ValidName reports (as a permanent error) whether name is not a valid object name. Valid
// names are non-empty components of [A-Za-z0-9._-] joined by '/', where no component is
// empty or starts with '.' (so "..", "/abs", "a//b" and "a/" are rejected), at most
// MaxNameLen bytes. Every store checks it before touching its medium.
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return Permanent(fmt.Errorf("invalid object name %q", name))
	}
	for _, c := range strings.Split(name, "/") {
		if c == "" || c[0] == '.' || len(c) > 255 {
			return Permanent(fmt.Errorf("invalid object name %q", name))
		}
		for i := 0; i < len(c); i++ {
			b := c[i]
			if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '-') {
				return Permanent(fmt.Errorf("invalid object name %q", name))
			}
		}
	}
	return nil
}

// ValidPrefix reports whether prefix is "" or a prefix of a valid name (a trailing '/' or a
// partial last component included).
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	p := strings.TrimSuffix(prefix, "/")
	if p == "" {
		return Permanent(fmt.Errorf("invalid list prefix %q", prefix))
	}
	if err := ValidName(p); err != nil {
		return Permanent(fmt.Errorf("invalid list prefix %q", prefix))
	}
	return nil
}
