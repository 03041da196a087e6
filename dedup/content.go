package dedup

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sync"

	"github.com/imgfs/imgfs/dedup/keyring"
)

// contentHeader is the fixed 16-byte header of every format-v1 content object:
// magic "IMGFS", version 1, kind 'c', 0, aead=1 (AES-256-GCM), segLog2=16, 6 zero bytes.
var contentHeader = [headerLen]byte{'I', 'M', 'G', 'F', 'S', 0x01, 'c', 0x00, aeadAESGCM, segLog2}

const contentDomain = "imgfs v1 content"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// parseContentHeader accepts exactly the v1 header; anything else is corrupt.
func parseContentHeader(b []byte) error {
	if len(b) < headerLen {
		return corrupt("short header")
	}
	if [headerLen]byte(b[:headerLen]) != contentHeader {
		return corrupt("bad header (magic, version, kind, aead or segment size)")
	}
	return nil
}

// contentStream checks the header and the key commitment of prefix (header || commit)
// and returns the stream for a plaintext of size bytes. The commitment is compared with
// hmac.Equal before any GCM operation.
func contentStream(kc []byte, prefix []byte, size int64) (*stream, error) {
	if len(kc) != 32 {
		return nil, errors.New("dedup: content key must be 32 bytes")
	}
	if len(prefix) < contentStart {
		return nil, corrupt("short object")
	}
	if err := parseContentHeader(prefix); err != nil {
		return nil, err
	}
	kcom := hkdf32(kc, nil, "imgfs v1 content commit")
	if !hmac.Equal(hmacSHA256(kcom, prefix[:headerLen]), prefix[headerLen:contentStart]) {
		return nil, corrupt("key commitment mismatch")
	}
	kenc := hkdf32(kc, nil, "imgfs v1 content enc")
	aad := append([]byte(nil), prefix[:contentStart]...)
	return newStream(newGCM(kenc), aad, contentStart, streamLen(size)), nil
}

// readFullAt reads len(p) bytes at off, treating a short read as an error.
func readFullAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Seal reads src twice (key derivation, then encryption) and writes the object to dst.
// Memory stays bounded whatever the size: one 64 KiB segment buffer. The SHA-256 locator
// is computed while writing. A CRC-32C of both passes guards against src changing between
// them (that would encrypt other bytes under this content's key and nonces).
func Seal(cs keyring.Secret, src io.ReaderAt, size int64, dst io.Writer) (Ref, error) {
	if len(cs) != 32 {
		return Ref{}, errors.New("dedup: convergence secret must be 32 bytes")
	}
	if size < 0 || size > MaxPlainSize {
		return Ref{}, fmt.Errorf("dedup: plaintext size %d out of range", size)
	}
	buf := make([]byte, segSize+tagSize)

	// Pass 1: K_c = HMAC(CS, "imgfs v1 content" || P).
	mac := hmac.New(sha256.New, cs)
	mac.Write([]byte(contentDomain))
	var crc1 uint32
	for off := int64(0); off < size; {
		n := min(int64(segSize), size-off)
		if err := readFullAt(src, buf[:n], off); err != nil {
			return Ref{}, fmt.Errorf("dedup: reading source: %w", err)
		}
		mac.Write(buf[:n])
		crc1 = crc32.Update(crc1, castagnoli, buf[:n])
		off += n
	}
	kc := keyring.Secret(mac.Sum(nil))
	ref, crc2, err := sealWithKey(kc, src, size, dst, buf)
	if err != nil {
		return Ref{}, err
	}
	if crc1 != crc2 {
		return Ref{}, errors.New("dedup: source changed while sealing")
	}
	return ref, nil
}

// sealWithKey is pass 2 of Seal: it encrypts src under content key kc. Only Seal may call it
// with a key that is not HMAC(CS, src) (tests build forgeries with it).
func sealWithKey(kc keyring.Secret, src io.ReaderAt, size int64, dst io.Writer, buf []byte) (Ref, uint32, error) {
	// Header, commitment, and the stream cipher.
	kcom := hkdf32(kc, nil, "imgfs v1 content commit")
	prefix := make([]byte, 0, contentStart)
	prefix = append(prefix, contentHeader[:]...)
	prefix = append(prefix, hmacSHA256(kcom, contentHeader[:])...)
	kenc := hkdf32(kc, nil, "imgfs v1 content enc")
	st := newStream(newGCM(kenc), prefix, contentStart, streamLen(size))

	h := sha256.New()
	h.Write(prefix)
	if _, err := dst.Write(prefix); err != nil {
		return Ref{}, 0, fmt.Errorf("dedup: writing object: %w", err)
	}

	// Pass 2: stream = u64be(len) || u64be(0) || P || zeros, sealed segment by segment.
	var crc2 uint32
	for i := int64(0); i < st.n; i++ {
		base := i * segSize
		pn := min(int64(segSize), st.sl-base)
		seg := buf[:pn]
		w := int64(0) // bytes of seg filled
		if i == 0 {
			binary.BigEndian.PutUint64(seg[0:8], uint64(size))
			clear(seg[8:16])
			w = innerLen
		}
		// Plaintext P occupies stream offsets [innerLen, innerLen+size).
		if pOff := base + w - innerLen; pOff < size {
			n := min(pn-w, size-pOff)
			if err := readFullAt(src, seg[w:w+n], pOff); err != nil {
				return Ref{}, 0, fmt.Errorf("dedup: reading source: %w", err)
			}
			crc2 = crc32.Update(crc2, castagnoli, seg[w:w+n])
			w += n
		}
		clear(seg[w:])
		out := st.sealSeg(buf[:0], seg, i)
		h.Write(out)
		if _, err := dst.Write(out); err != nil {
			return Ref{}, 0, fmt.Errorf("dedup: writing object: %w", err)
		}
	}
	var ref Ref
	h.Sum(ref.Locator[:0])
	ref.Key = kc
	ref.Size = size
	return ref, crc2, nil
}

// Hash returns the locator of an object: SHA-256 of all its bytes.
func Hash(obj []byte) Locator { return sha256.Sum256(obj) }

// Open decrypts a whole object, checking SHA-256(obj) == ref.Locator first.
func Open(ref Ref, obj []byte) ([]byte, error) {
	if want := ObjectSize(ref.Size); want < 0 || int64(len(obj)) != want {
		return nil, corrupt("object size does not match the plaintext size")
	}
	if Hash(obj) != ref.Locator {
		return nil, corrupt("object hash does not match its locator")
	}
	return openContent(ref.Key, ref.Size, obj)
}

// openContent decrypts and verifies obj without the locator check (the caller did it).
func openContent(kc []byte, size int64, obj []byte) ([]byte, error) {
	st, err := contentStream(kc, obj, size)
	if err != nil {
		return nil, err
	}
	if int64(len(obj)) != st.objLen() {
		return nil, corrupt("object size does not match the plaintext size")
	}
	out := make([]byte, st.sl)
	for i := int64(0); i < st.n; i++ {
		off, clen := st.seg(i)
		pt, err := st.openSeg(out[i*segSize:i*segSize], obj[off:off+clen], i)
		if err != nil {
			return nil, err
		}
		if err := checkLayout(pt, i, size); err != nil {
			return nil, err
		}
	}
	return out[innerLen : innerLen+size : innerLen+size], nil
}

// Reader gives verified random access to a content object's plaintext. Each segment is
// authenticated before any of its bytes is returned. When the whole object is read in
// order, the SHA-256 locator is checked (and padding-only segments are authenticated)
// before the bytes of the last payload segment are released.
// It is safe for concurrent use.
type Reader struct {
	mu       sync.Mutex
	obj      io.ReaderAt
	st       *stream
	size     int64
	loc      Locator
	buf      []byte // ciphertext of one segment, decrypted in place into the cache
	cached   int64  // index of the segment held in buf, or -1
	plain    []byte // decrypted bytes of segment cached
	h        hash.Hash
	hashNext int64 // next segment the running hash expects
	lastPay  int64 // last segment that holds payload (or the inner header) bytes
	bad      error // sticky locator failure
}

// OpenReader returns verified random access to the plaintext of the object in obj.
// Every returned byte has passed its segment's GCM check; a failure is ErrCorrupt.
// The result is a *Reader.
func OpenReader(ref Ref, obj io.ReaderAt, objSize int64) (io.ReaderAt, error) {
	if want := ObjectSize(ref.Size); want < 0 || objSize != want {
		return nil, corrupt("object size does not match the plaintext size")
	}
	prefix := make([]byte, contentStart)
	if err := readFullAt(obj, prefix, 0); err != nil {
		return nil, fmt.Errorf("dedup: reading object header: %w", err)
	}
	st, err := contentStream(ref.Key, prefix, ref.Size)
	if err != nil {
		return nil, err
	}
	r := &Reader{obj: obj, st: st, size: ref.Size, loc: ref.Locator,
		buf: make([]byte, segSize+tagSize), cached: -1, h: sha256.New(),
		lastPay: (innerLen + ref.Size - 1) / segSize}
	r.h.Write(prefix)
	// Segment 0 holds the inner length: check it now so a bad object fails at open.
	if _, err := r.load(0); err != nil {
		return nil, err
	}
	return r, nil
}

// Size is the plaintext size.
func (r *Reader) Size() int64 { return r.size }

// String names the object only: a Reader holds a decrypted segment and the content key's
// cipher, neither of which may reach a log line through %v.
func (r *Reader) String() string { return fmt.Sprintf("dedup.Reader(%s, %d bytes)", r.loc, r.size) }

// GoString is String (%#v).
func (r *Reader) GoString() string { return r.String() }

// load returns the verified stream bytes of segment i. Caller holds r.mu (or owns r).
func (r *Reader) load(i int64) ([]byte, error) {
	if r.bad != nil {
		return nil, r.bad
	}
	if r.cached == i {
		return r.plain, nil
	}
	r.cached = -1
	off, clen := r.st.seg(i)
	ct := r.buf[:clen]
	if err := readFullAt(r.obj, ct, off); err != nil {
		return nil, fmt.Errorf("dedup: reading object: %w", err)
	}
	if i == r.hashNext {
		r.h.Write(ct)
		r.hashNext++
	}
	pt, err := r.st.openSeg(ct[:0], ct, i)
	if err != nil {
		return nil, err
	}
	if err := checkLayout(pt, i, r.size); err != nil {
		return nil, err
	}
	if i == r.lastPay && r.hashNext == i+1 {
		// The last payload bytes are about to be released after an in-order read:
		// authenticate the segments that hold only padding (Padmé can add whole
		// segments above 4 MiB) and check the locator first.
		if err := r.verifyTail(i + 1); err != nil {
			r.bad = err
			return nil, err
		}
	}
	r.cached, r.plain = i, pt
	return pt, nil
}

// verifyTail hashes, authenticates and checks segments from..n-1 (padding only), then
// compares the finished hash with the locator. Caller holds r.mu.
func (r *Reader) verifyTail(from int64) error {
	var buf []byte
	for j := from; j < r.st.n; j++ {
		if buf == nil {
			buf = make([]byte, segSize+tagSize)
		}
		off, clen := r.st.seg(j)
		ct := buf[:clen]
		if err := readFullAt(r.obj, ct, off); err != nil {
			return fmt.Errorf("dedup: reading object: %w", err)
		}
		r.h.Write(ct)
		pt, err := r.st.openSeg(ct[:0], ct, j)
		if err != nil {
			return err
		}
		if err := checkLayout(pt, j, r.size); err != nil {
			return err
		}
	}
	r.hashNext = r.st.n
	var got Locator
	r.h.Sum(got[:0])
	if got != r.loc {
		return corrupt("object hash does not match its locator")
	}
	return nil
}

// ReadAt implements io.ReaderAt over the plaintext.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("dedup: negative offset")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(p) {
		if off >= r.size {
			return n, io.EOF
		}
		pos := innerLen + off // stream offset
		i := pos / segSize
		pt, err := r.load(i)
		if err != nil {
			return n, err
		}
		lo := pos - i*segSize
		hi := min(int64(len(pt)), innerLen+r.size-i*segSize)
		c := copy(p[n:], pt[lo:hi])
		n += c
		off += int64(c)
	}
	return n, nil
}

// VerifyObject streams the object in obj and checks SHA-256 == loc, with one 64 KiB buffer.
func VerifyObject(loc Locator, obj io.ReaderAt, objSize int64) error {
	h := sha256.New()
	if _, err := io.CopyBuffer(h, io.NewSectionReader(obj, 0, objSize), make([]byte, segSize)); err != nil {
		return fmt.Errorf("dedup: reading object: %w", err)
	}
	var got Locator
	h.Sum(got[:0])
	if got != loc {
		return corrupt("object hash does not match its locator")
	}
	return nil
}

// OpenVerifiedReader is OpenReader after VerifyObject: no byte is released before the whole
// object hashed to its locator. Use it in group/global mode (docs/format.md §5), where others
// know K_c and could build validly encrypted objects for other plaintext (T17 in
// docs/security-tests.md).
func OpenVerifiedReader(ref Ref, obj io.ReaderAt, objSize int64) (io.ReaderAt, error) {
	if want := ObjectSize(ref.Size); want < 0 || objSize != want {
		return nil, corrupt("object size does not match the plaintext size")
	}
	if err := VerifyObject(ref.Locator, obj, objSize); err != nil {
		return nil, err
	}
	return OpenReader(ref, obj, objSize)
}
