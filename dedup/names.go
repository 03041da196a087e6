package dedup

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// String is the lowercase hex form of the locator.
func (l Locator) String() string { return hex.EncodeToString(l[:]) }

// ParseLocator parses 64 lowercase hex digits.
func ParseLocator(s string) (Locator, error) {
	var l Locator
	if len(s) != 2*len(l) || !isLowerHex(s) {
		return l, errors.New("dedup: locator must be 64 lowercase hex digits")
	}
	hex.Decode(l[:], []byte(s))
	return l, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func objName(prefix string, l Locator) string {
	h := l.String()
	return prefix + h[:2] + "/" + h
}

func parseObjName(prefix, name string) (Locator, error) {
	// prefix + 2 hex + "/" + 64 hex
	if len(name) != len(prefix)+2+1+64 || name[:len(prefix)] != prefix || name[len(prefix)+2] != '/' {
		return Locator{}, fmt.Errorf("dedup: not a %q object name", prefix)
	}
	l, err := ParseLocator(name[len(prefix)+3:])
	if err != nil {
		return Locator{}, err
	}
	if name[len(prefix):len(prefix)+2] != name[len(prefix)+3:len(prefix)+5] {
		return Locator{}, errors.New("dedup: object name fan-out does not match its locator")
	}
	return l, nil
}

// ContentName is the store key of a content object: "c/" + hex[0:2] + "/" + hex.
func ContentName(l Locator) string { return objName("c/", l) }

// ParseContentName is the inverse of ContentName (for List output).
func ParseContentName(name string) (Locator, error) { return parseObjName("c/", name) }

// MetaName is the store key of a metadata object: "m/" + hex[0:2] + "/" + hex.
func MetaName(l Locator) string { return objName("m/", l) }

// ParseMetaName is the inverse of MetaName.
func ParseMetaName(name string) (Locator, error) { return parseObjName("m/", name) }

// RootName is the store key of root pointer seq: "r/" + 20 decimal digits.
func RootName(seq uint64) string { return fmt.Sprintf("r/%020d", seq) }

// ParseRootName is the inverse of RootName; it accepts only the canonical 20-digit form.
func ParseRootName(name string) (uint64, error) {
	if len(name) != 22 || name[:2] != "r/" {
		return 0, errors.New("dedup: not a root object name")
	}
	for i := 2; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return 0, errors.New("dedup: not a root object name")
		}
	}
	seq, err := strconv.ParseUint(name[2:], 10, 64)
	if err != nil {
		return 0, errors.New("dedup: root sequence number out of range")
	}
	return seq, nil
}
