package core

import (
	"encoding/binary"
	"errors"
	"time"
)

// Small varint codec shared by the bbolt records, the journal and the tree objects.

type encoder struct{ b []byte }

func (e *encoder) u(v uint64)     { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) i(v int64)      { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) byte1(v byte)   { e.b = append(e.b, v) }
func (e *encoder) fixed(p []byte) { e.b = append(e.b, p...) }
func (e *encoder) bytes(p []byte) { e.u(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) str(s string)   { e.u(uint64(len(s))); e.b = append(e.b, s...) }

var errDecode = errors.New("malformed record")

// decoder reads what encoder wrote; the first error sticks and later reads return zeros.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errDecode
	}
	d.b = nil
}

func (d *decoder) u() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n > 1 && d.b[n-1] == 0 { // only the shortest encoding: one value, one form
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) i() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n > 1 && d.b[n-1] == 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// u32 reads a uvarint that must fit 32 bits.
func (d *decoder) u32() uint32 {
	v := d.u()
	if v > 1<<32-1 {
		d.fail()
		return 0
	}
	return uint32(v)
}

func (d *decoder) byte1() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) fixed(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.fail()
		return make([]byte, n)
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed byte string of at most max bytes.
func (d *decoder) bytes(max int) []byte {
	n := d.u()
	if d.err != nil || n > uint64(max) || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(max int) string { return string(d.bytes(max)) }

// count reads an element count and rejects counts that cannot fit in the rest of the input
// (each element takes at least minSize bytes), so a hostile count cannot force a huge
// allocation.
func (d *decoder) count(minSize int) int {
	n := d.u()
	if d.err != nil || minSize < 1 || n > uint64(len(d.b)/minSize) {
		d.fail()
		return 0
	}
	return int(n)
}

// end fails unless every byte was consumed.
func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return d.err
}

func be64u(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func timeNs(ns int64) time.Time { return time.Unix(0, ns) }

func timeNow() time.Time { return time.Now() }
