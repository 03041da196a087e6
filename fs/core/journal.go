package core

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// Redo journal (docs/core.md, "What close and fsync guarantee"). The namespace batch
// (batch.go) is a bbolt write transaction that is committed, with its two fsyncs, once per
// group-commit window. So that what close(2) (and create, rename, ...) acknowledged
// survives kill -9 before that, every batch operation appends one record with its bbolt
// changes to CacheDir/journal with write(2) and no fsync: the kernel has it when the
// operation returns. Open re-applies the records of the current generation onto the last
// committed state.
//
//	file   = record*
//	record = u32be(len) || nonce(12) || AES-256-GCM(K_journal, nonce, payload, AAD = gen || seq)
//	payload = nOps { kind(1 put, 2 delete) nPath { bucket } key [value] }
//	          nChecks { spoolID digest(32) }
//
// The GCM tag is the record's checksum: a record cut anywhere (power loss while the page
// cache was written back) fails to open, and replay stops at the first such record. gen is
// bumped inside every batch commit (meta key "jgen"), so records that a commit made durable
// are never applied twice even when the file's truncation after it was lost. seq numbers
// the records of one generation, so none can be dropped or reordered. A spool check makes a
// record whose spool file did not fully reach the disk (power loss inside the window) stop
// the replay too: the tree stays whole, and only changes of the window are lost.

const (
	mJournalGen   = "jgen"
	maxJournalRec = 64 << 20
	journalFile   = "journal"
)

const (
	jPut = 1
	jDel = 2
)

type jop struct {
	kind byte
	path [][]byte // bucket names, outermost first
	key  []byte
	val  []byte
}

type spoolCheck struct {
	id     uint64
	digest [32]byte
}

type journalRec struct {
	ops    []jop
	checks []spoolCheck
}

// journal is the open journal file of a writer FS; its fields are used under f.mu.
type journal struct {
	f      *os.File
	aead   cipher.AEAD
	gen    uint64
	seq    uint64
	cur    journalRec // changes of the running batch operation
	buf    []byte
	broken bool // an append failed: the batch is rolled back and gen bumped
}

// txJournals maps the running batch transaction of each FS to its journal, so that the
// bucket helpers (bput, bdel) record what they change without a journal parameter.
var txJournals sync.Map // *bolt.Tx -> *journal

// journaledMeta says which meta keys the journal carries: counters and dirty marks of the
// working copy. Anchors, locators of committed objects and the like are written only by a
// root commit or merge, which commit the batch with them at once (a kill -9 before that
// loses them, which Open handles: TestOwnRootAfterKill).
func journaledMeta(key []byte) bool {
	k := string(key)
	return k == mChg || k == mNextIno || k == mNextSpool ||
		strings.HasPrefix(k, mShDirty) || strings.HasPrefix(k, mAuxDirty)
}

func (j *journal) note(op jop) {
	if len(op.path) == 1 && string(op.path[0]) == string(bMeta) && !journaledMeta(op.key) {
		return
	}
	op.key = append([]byte(nil), op.key...)
	if op.val != nil {
		op.val = append([]byte(nil), op.val...)
	}
	j.cur.ops = append(j.cur.ops, op)
}

func journalOf(tx *bolt.Tx) *journal {
	if v, ok := txJournals.Load(tx); ok {
		return v.(*journal)
	}
	return nil
}

// bput is b.Put in bucket path of tx, recorded in the journal when tx is the batch.
func bput(tx *bolt.Tx, bucket []byte, k, v []byte) error {
	if err := tx.Bucket(bucket).Put(k, v); err != nil {
		return err
	}
	if j := journalOf(tx); j != nil {
		j.note(jop{kind: jPut, path: [][]byte{bucket}, key: k, val: v})
	}
	return nil
}

// bdel is b.Delete, recorded like bput.
func bdel(tx *bolt.Tx, bucket []byte, k []byte) error {
	if err := tx.Bucket(bucket).Delete(k); err != nil {
		return err
	}
	if j := journalOf(tx); j != nil {
		j.note(jop{kind: jDel, path: [][]byte{bucket}, key: k})
	}
	return nil
}

// bputAux and bdelAux change an entry of aux table bucket aux/<table>.
func bputAux(tx *bolt.Tx, table string, k, v []byte) error {
	b, err := tx.Bucket(bAux).CreateBucketIfNotExists([]byte(table))
	if err != nil {
		return err
	}
	if err := b.Put(k, v); err != nil {
		return err
	}
	if j := journalOf(tx); j != nil {
		j.note(jop{kind: jPut, path: [][]byte{bAux, []byte(table)}, key: k, val: v})
	}
	return nil
}

func bdelAux(tx *bolt.Tx, table string, k []byte) error {
	b := tx.Bucket(bAux).Bucket([]byte(table))
	if b == nil {
		return nil
	}
	if err := b.Delete(k); err != nil {
		return err
	}
	if j := journalOf(tx); j != nil {
		j.note(jop{kind: jDel, path: [][]byte{bAux, []byte(table)}, key: k})
	}
	return nil
}

func encodeJournalRec(r *journalRec, b []byte) []byte {
	e := encoder{b: b}
	e.u(uint64(len(r.ops)))
	for _, op := range r.ops {
		e.byte1(op.kind)
		e.u(uint64(len(op.path)))
		for _, p := range op.path {
			e.bytes(p)
		}
		e.bytes(op.key)
		if op.kind == jPut {
			e.bytes(op.val)
		}
	}
	e.u(uint64(len(r.checks)))
	for _, c := range r.checks {
		e.u(c.id)
		e.fixed(c.digest[:])
	}
	return e.b
}

// decodeJournalRec is the decoder of a journal record's payload (FuzzDecodeJournalRec).
func decodeJournalRec(b []byte) (journalRec, error) {
	d := decoder{b: b}
	var r journalRec
	n := d.count(4)
	for i := 0; i < n && d.err == nil; i++ {
		op := jop{kind: d.byte1()}
		if op.kind != jPut && op.kind != jDel {
			d.fail()
			break
		}
		np := d.count(1)
		if np < 1 || np > 2 {
			d.fail()
			break
		}
		for k := 0; k < np; k++ {
			op.path = append(op.path, d.bytes(255))
		}
		op.key = d.bytes(bolt.MaxKeySize)
		if op.kind == jPut {
			op.val = d.bytes(maxJournalRec)
			if op.val == nil {
				op.val = []byte{}
			}
		}
		if len(op.key) == 0 {
			d.fail()
		}
		r.ops = append(r.ops, op)
	}
	nc := d.count(33)
	for i := 0; i < nc && d.err == nil; i++ {
		c := spoolCheck{id: d.u()}
		copy(c.digest[:], d.fixed(32))
		r.checks = append(r.checks, c)
	}
	return r, d.end()
}

func journalAAD(gen, seq uint64) []byte {
	a := append([]byte("imgfs journal"), be64(gen)...)
	return append(a, be64(seq)...)
}

// openJournal opens (creating) the journal file for appending.
func (f *FS) openJournal(gen uint64) (*journal, error) {
	jf, err := os.OpenFile(filepath.Join(f.dir, journalFile), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &journal{f: jf, aead: f.journalAEAD(), gen: gen}, nil
}

func (f *FS) journalAEAD() cipher.AEAD {
	return newAEAD(subkey(f.keys.LocalKey, "imgfs v1 local journal"))
}

// overlayJournal is the read-only open of a cache whose journal holds records: they are
// applied in a write transaction that serves reads (f.wtx) and is never committed.
func (f *FS) overlayJournal() error {
	data, err := os.ReadFile(filepath.Join(f.dir, journalFile))
	if err != nil {
		return localErr("reading journal", err)
	}
	tx, err := f.db.Begin(true)
	if err != nil {
		return localErr("local state", err)
	}
	if _, err := f.applyJournal(tx, f.journalAEAD(), data, getU64(tx, mJournalGen)); err != nil {
		tx.Rollback()
		return localErr("reading journal", err)
	}
	f.wtx = tx
	return nil
}

// append writes the current operation's record (if it changed anything). No fsync: after
// write(2) returns, a kill -9 of this process cannot lose it.
func (j *journal) append() error {
	r := &j.cur
	if len(r.ops) == 0 && len(r.checks) == 0 {
		return nil
	}
	defer func() { j.cur = journalRec{ops: r.ops[:0]} }()
	pay := encodeJournalRec(r, j.buf[:0])
	out := make([]byte, 4+12, 4+12+len(pay)+16)
	if _, err := rand.Read(out[4:16]); err != nil {
		panic(err)
	}
	out = j.aead.Seal(out, out[4:16], pay, journalAAD(j.gen, j.seq))
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	j.buf = pay[:0]
	if len(out)-4 > maxJournalRec {
		return errnoErr(syscall.EFBIG, "journal record of %d bytes", len(out))
	}
	if _, err := j.f.Write(out); err != nil {
		return err
	}
	j.seq++
	return nil
}

// reset starts generation gen in an empty file (after a batch commit made the records
// durable in bbolt). The truncation needs no fsync: records of an older generation are
// never applied.
func (j *journal) reset(gen uint64) error {
	j.gen, j.seq, j.cur = gen, 0, journalRec{}
	return j.f.Truncate(0)
}

// readJournal returns the records of generation gen at the start of data: the longest
// prefix that opens and decodes.
func readJournal(aead cipher.AEAD, data []byte, gen uint64) []journalRec {
	var out []journalRec
	for seq := uint64(0); len(data) >= 4; seq++ {
		n := int(binary.BigEndian.Uint32(data))
		if n < 12+16 || n > maxJournalRec+16 || n > len(data)-4 {
			break
		}
		rec := data[4 : 4+n]
		pay, err := aead.Open(nil, rec[:12], rec[12:], journalAAD(gen, seq))
		if err != nil {
			break
		}
		r, err := decodeJournalRec(pay)
		if err != nil {
			break
		}
		out = append(out, r)
		data = data[4+n:]
	}
	return out
}

// replayJournal re-applies the journal's records onto the committed state (Open, writers
// only, before anything else changes the cache), commits them with a new generation and
// empties the file. It stops at the first record that is cut or whose spool files did not
// reach the disk whole.
func (f *FS) replayJournal() error {
	var gen uint64
	if err := f.db.View(func(tx *bolt.Tx) error {
		gen = getU64(tx, mJournalGen)
		return nil
	}); err != nil {
		return localErr("local state", err)
	}
	j, err := f.openJournal(gen)
	if err != nil {
		return localErr("opening journal", err)
	}
	f.jr = j
	data, err := io.ReadAll(io.NewSectionReader(j.f, 0, 1<<62))
	if err != nil {
		return localErr("reading journal", err)
	}
	if len(data) == 0 {
		return nil
	}
	applied := 0
	err = f.db.Update(func(tx *bolt.Tx) error {
		var err error
		if applied, err = f.applyJournal(tx, j.aead, data, gen); err != nil {
			return err
		}
		return putU64(tx, mJournalGen, gen+1)
	})
	if err != nil {
		return localErr("replaying journal", err)
	}
	if applied > 0 {
		f.log.Info("core: journal replayed", "records", applied)
	}
	return j.reset(gen + 1)
}

// applyJournal applies the whole records of generation gen at the start of data whose
// spools are whole, and returns how many.
func (f *FS) applyJournal(tx *bolt.Tx, aead cipher.AEAD, data []byte, gen uint64) (int, error) {
	applied := 0
	for _, r := range readJournal(aead, data, gen) {
		if !f.spoolsWhole(r.checks) {
			f.log.Warn("core: journal replay stops at a record whose spool did not reach the disk whole (power loss within the group-commit window)")
			break
		}
		if err := applyJournalRec(tx, r); err != nil {
			return applied, err
		}
		applied++
	}
	return applied, nil
}

func applyJournalRec(tx *bolt.Tx, r journalRec) error {
	for _, op := range r.ops {
		b := tx.Bucket(op.path[0])
		if b == nil {
			return errors.New("journal names an unknown bucket")
		}
		if len(op.path) == 2 {
			var err error
			if op.kind == jDel {
				if b = b.Bucket(op.path[1]); b == nil {
					continue
				}
			} else if b, err = b.CreateBucketIfNotExists(op.path[1]); err != nil {
				return err
			}
		}
		var err error
		if op.kind == jPut {
			err = b.Put(op.key, op.val)
		} else {
			err = b.Delete(op.key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// spoolsWhole checks that each spool file holds exactly the slots it held when its record
// was written, each one authentic (a slot whose pages did not all reach the disk fails GCM).
func (f *FS) spoolsWhole(checks []spoolCheck) bool {
	for _, c := range checks {
		sp, err := openSpool(f.spoolPath(c.id), f.lc.spool, false)
		if err != nil {
			return false
		}
		d, err := sp.verifiedDigest()
		sp.Close()
		if err != nil || d != c.digest {
			return false
		}
	}
	return true
}

// slotDigest is SHA-256 over (u64be(i) || nonce) of the held slots in index order.
func slotDigest(nonces map[int64][12]byte) [32]byte {
	idx := make([]int64, 0, len(nonces))
	for i := range nonces {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	h := sha256.New()
	var b [20]byte
	for _, i := range idx {
		binary.BigEndian.PutUint64(b[:8], uint64(i))
		n := nonces[i]
		copy(b[8:], n[:])
		h.Write(b[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
