package core

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/crypto/hkdf"

	"crypto/sha256"

	"github.com/imgfs/imgfs/dedup"
)

// Spool file format (local only, never uploaded):
//
//	header (64 bytes) = "IMGFSSP1" || salt(32) || 24 zero bytes
//	slot i            = nonce(12) || AES-256-GCM(K_file, nonce, block i, AAD = u64be(i))
//
// K_file = HKDF(K_spool, salt). Every block is a full 64 KiB of plaintext (zeros past the
// file size), so slot i lives at a fixed offset and a partial write is read-modify-write of
// one block. Each block write draws a fresh random nonce (a file sees far fewer than 2^32
// block writes), which also makes a byte copy of a spool file safe to keep writing. An
// all-zero nonce marks a hole (never written, or past a truncation): it reads as zeros.
// The file size is not in the spool; the inode record (or the journal) holds it.
//
// A spool is an overlay on a base (docs/core.md): a block the spool does not hold reads as
// the base's bytes below baseLen and zeros above. So copy-on-write copies nothing from
// sealed content, and the sealer re-chunks only around the blocks the spool holds.
const (
	spoolBlock  = 64 << 10
	spoolSlot   = 12 + spoolBlock + 16
	spoolHeader = 64
)

var spoolMagic = []byte("IMGFSSP1")

type spoolFile struct {
	f    *os.File
	aead cipher.AEAD
	buf  []byte // one slot, reused; callers serialise access to a spoolFile
	pt   []byte // one plaintext block

	baseC   dedup.Content // the content below the overlay (empty: none)
	base    io.ReaderAt   // reads baseC
	baseCl  io.Closer
	baseLen int64 // base bytes visible: min(base size, every truncation since)

	// nonces of the slots this spool holds, for the journal's spool check (journal.go);
	// nil for a spool opened only to be read
	nonces map[int64][12]byte
}

// setBase puts the spool over content c (read through r, closed with the spool), of which
// the first n bytes show.
func (s *spoolFile) setBase(c dedup.Content, r io.ReaderAt, cl io.Closer, n int64) {
	s.baseC, s.base, s.baseCl, s.baseLen = c, r, cl, n
}

func spoolKey(k []byte, salt []byte) []byte {
	out := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, k, salt, []byte("imgfs v1 spool file")), out); err != nil {
		panic(err)
	}
	return out
}

func newSpoolFile(f *os.File, key []byte) *spoolFile {
	return &spoolFile{f: f, aead: newAEAD(key), buf: make([]byte, spoolSlot), pt: make([]byte, spoolBlock)}
}

// createSpool makes a new empty spool file at path with a fresh salt.
func createSpool(path string, k []byte) (*spoolFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, spoolHeader)
	copy(hdr, spoolMagic)
	salt := hdr[8:40]
	if _, err := rand.Read(salt); err != nil {
		panic(err)
	}
	if _, err := f.WriteAt(hdr, 0); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	s := newSpoolFile(f, spoolKey(k, salt))
	s.nonces = map[int64][12]byte{}
	return s, nil
}

// openSpool opens an existing spool file.
func openSpool(path string, k []byte, write bool) (*spoolFile, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, spoolHeader)
	if _, err := f.ReadAt(hdr, 0); err != nil || string(hdr[:8]) != string(spoolMagic) {
		f.Close()
		return nil, fmt.Errorf("spool %s: bad header", path)
	}
	return newSpoolFile(f, spoolKey(k, hdr[8:40])), nil
}

// copySpool copies the slots src holds into a new sparse file at path (same salt, so same
// key); the caller gives the copy src's base.
func copySpool(src *spoolFile, path string, k []byte) (*spoolFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	err = copyRange(f, src.f, 0, spoolHeader)
	if err == nil {
		var runs [][2]int64
		runs, err = src.heldBlocks()
		for _, r := range runs {
			if err == nil {
				err = copyRange(f, src.f, slotOff(r[0]), slotOff(r[1])-slotOff(r[0]))
			}
		}
	}
	if err == nil {
		var st os.FileInfo
		if st, err = src.f.Stat(); err == nil {
			err = f.Truncate(st.Size()) // keep the slot count (a hole at the end reads as zeros)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	hdr := make([]byte, spoolHeader)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	s := newSpoolFile(f, spoolKey(k, hdr[8:40]))
	if s.nonces, err = s.heldNonces(false); err != nil {
		s.Close()
		os.Remove(path)
		return nil, err
	}
	return s, nil
}

// heldNonces returns the nonces of the slots the spool holds; with verify, every slot is
// authenticated too (a slot whose pages did not all reach the disk fails).
func (s *spoolFile) heldNonces(verify bool) (map[int64][12]byte, error) {
	runs, err := s.heldBlocks()
	if err != nil {
		return nil, err
	}
	out := map[int64][12]byte{}
	var aad [8]byte
	for _, r := range runs {
		for i := r[0]; i < r[1]; i++ {
			b := s.buf[:12]
			if verify {
				b = s.buf
			}
			if n, err := s.f.ReadAt(b, slotOff(i)); n < len(b) {
				if err == nil || err == io.EOF {
					err = errSpoolAuth
				}
				return nil, err
			}
			if verify {
				binary.BigEndian.PutUint64(aad[:], uint64(i))
				if _, err := s.aead.Open(s.pt[:0], s.buf[:12], s.buf[12:], aad[:]); err != nil {
					return nil, errSpoolAuth
				}
			}
			out[i] = [12]byte(s.buf[:12])
		}
	}
	return out, nil
}

// verifiedDigest is the slot digest of what is on disk, every slot authenticated.
func (s *spoolFile) verifiedDigest() ([32]byte, error) {
	n, err := s.heldNonces(true)
	if err != nil {
		return [32]byte{}, err
	}
	return slotDigest(n), nil
}

func (s *spoolFile) Close() error {
	if s.baseCl != nil {
		s.baseCl.Close()
	}
	return s.f.Close()
}

var errSpoolAuth = errors.New("spool block failed authentication")

func slotOff(i int64) int64 { return spoolHeader + i*spoolSlot }

// readBlock returns the plaintext of block i (64 KiB; zeros for a hole). The result is
// s.pt, valid until the next call.
func (s *spoolFile) readBlock(i int64) ([]byte, error) {
	n, err := s.f.ReadAt(s.buf, slotOff(i))
	if err != nil && err != io.EOF {
		return nil, err
	}
	if n < spoolSlot || allZero(s.buf[:12]) {
		if n > 12 && !allZero(s.buf[:12]) {
			return nil, errSpoolAuth // torn slot
		}
		clear(s.pt)
		if lo := i * spoolBlock; lo < s.baseLen {
			m := min(spoolBlock, s.baseLen-lo)
			if k, err := s.base.ReadAt(s.pt[:m], lo); int64(k) != m {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, fmt.Errorf("reading base content: %w", err)
			}
		}
		return s.pt, nil
	}
	var aad [8]byte
	binary.BigEndian.PutUint64(aad[:], uint64(i))
	pt, err := s.aead.Open(s.pt[:0], s.buf[:12], s.buf[12:], aad[:])
	if err != nil {
		return nil, errSpoolAuth
	}
	return pt, nil
}

// writeBlock encrypts a full 64 KiB block into slot i.
func (s *spoolFile) writeBlock(i int64, pt []byte) error {
	nonce := s.buf[:12]
	for {
		if _, err := rand.Read(nonce); err != nil {
			panic(err)
		}
		if !allZero(nonce) {
			break
		}
	}
	var aad [8]byte
	binary.BigEndian.PutUint64(aad[:], uint64(i))
	if s.nonces != nil {
		s.nonces[i] = [12]byte(nonce)
	}
	out := s.aead.Seal(s.buf[:12], nonce, pt, aad[:])
	_, err := s.f.WriteAt(out, slotOff(i))
	return err
}

// readAt reads plaintext bytes [off, off+len(p)) of a file of the given size.
func (s *spoolFile) readAt(p []byte, off, size int64) (int, error) {
	if off >= size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < size {
		i := off / spoolBlock
		pt, err := s.readBlock(i)
		if err != nil {
			return n, err
		}
		lo := off - i*spoolBlock
		hi := min(int64(spoolBlock), size-i*spoolBlock)
		c := copy(p[n:], pt[lo:hi])
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// writeAt writes p at off. Blocks are read-modify-written; the caller keeps bytes past the
// file size zero (truncate does), so extending a file exposes zeros only.
func (s *spoolFile) writeAt(p []byte, off int64) error {
	for len(p) > 0 {
		i := off / spoolBlock
		lo := off - i*spoolBlock
		c := min(int64(len(p)), spoolBlock-lo)
		var blk []byte
		if lo == 0 && c == spoolBlock {
			blk = p[:c]
		} else {
			pt, err := s.readBlock(i)
			if err != nil {
				return err
			}
			copy(pt[lo:], p[:c])
			blk = pt
		}
		if err := s.writeBlock(i, blk); err != nil {
			return err
		}
		p = p[c:]
		off += c
	}
	return nil
}

// truncate sets the file size from oldSize to size: blocks past the end are dropped and
// the tail of the last block is zeroed.
func (s *spoolFile) truncate(size, oldSize int64) error {
	nb := (size + spoolBlock - 1) / spoolBlock
	s.baseLen = min(s.baseLen, size)
	if size < oldSize && size%spoolBlock != 0 {
		i := size / spoolBlock
		pt, err := s.readBlock(i)
		if err != nil {
			return err
		}
		clear(pt[size-i*spoolBlock:])
		if err := s.writeBlock(i, pt); err != nil {
			return err
		}
	}
	if size < oldSize {
		for i := range s.nonces {
			if i >= nb {
				delete(s.nonces, i)
			}
		}
		return s.f.Truncate(slotOff(nb))
	}
	return nil
}

// diskSize is the number of bytes the spool file takes for a file of the given size.
func spoolDiskSize(size int64) int64 {
	return slotOff((size + spoolBlock - 1) / spoolBlock)
}

// readerAt adapts a spool of a fixed size to io.ReaderAt (for dedup.Seal).
type spoolReader struct {
	s    *spoolFile
	size int64
}

func (r spoolReader) ReadAt(p []byte, off int64) (int, error) { return r.s.readAt(p, off, r.size) }

func copyRange(dst, src *os.File, off, n int64) error {
	_, err := io.Copy(io.NewOffsetWriter(dst, off), io.NewSectionReader(src, off, n))
	return err
}

// heldBlocks returns the runs [lo, hi) of block indexes whose slots the spool holds (were
// written and not truncated away). Only the file's data extents (SEEK_DATA/SEEK_HOLE) are
// looked at, so the cost follows what was written, not the file size.
func (s *spoolFile) heldBlocks() ([][2]int64, error) {
	st, err := s.f.Stat()
	if err != nil {
		return nil, err
	}
	nslots := (st.Size() - spoolHeader + spoolSlot - 1) / spoolSlot
	if nslots <= 0 {
		return nil, nil
	}
	var cand [][2]int64 // candidate slot runs from the data extents
	for off := int64(spoolHeader); off < st.Size(); {
		d, err := s.f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break
		}
		if err != nil { // no SEEK_DATA here: every slot is a candidate
			cand = [][2]int64{{0, nslots}}
			break
		}
		h, err := s.f.Seek(d, seekHole)
		if err != nil {
			h = st.Size()
		}
		lo := max(d-spoolHeader, 0) / spoolSlot
		hi := min((h-spoolHeader+spoolSlot-1)/spoolSlot, nslots)
		if n := len(cand); n > 0 && cand[n-1][1] >= lo {
			cand[n-1][1] = max(cand[n-1][1], hi)
		} else if hi > lo {
			cand = append(cand, [2]int64{lo, hi})
		}
		off = h
	}
	var out [][2]int64
	var nonce [12]byte
	for _, c := range cand {
		for i := c[0]; i < c[1]; i++ {
			if _, err := s.f.ReadAt(nonce[:], slotOff(i)); err != nil && err != io.EOF {
				return nil, err
			}
			if allZero(nonce[:]) {
				continue
			}
			if n := len(out); n > 0 && out[n-1][1] == i {
				out[n-1][1] = i + 1
			} else {
				out = append(out, [2]int64{i, i + 1})
			}
		}
	}
	return out, nil
}

// lseek whence values for sparse files (Linux).
const seekData, seekHole = 3, 4

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
