package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
)

// Rekey (imgfs rekey; docs/format.md §3.1, docs/cli.md "rekey") works on the store, not on
// a cache: it reads the newest root and everything it references under the old keys and
// writes the same namespace under the new ones as the next root. Every cache of the vault
// is rebuilt from the store afterwards (its records are sealed under the old K_local;
// checkKeyGeneration in keygen.go).
//
// Metadata: every tree shard and aux unit of the newest root is decrypted and sealed again
// under the new K_meta (new objects, new locators); aux entries are regrouped into units by
// the new K_local's keyed hash, as every cache will compute it. Content: with Content, every
// distinct file content is read, chunked again by the new convergence secret's chunker and
// sealed under it (new K_c, new locators); aux keys that are content IDs (32 bytes: the
// near-duplicate index) or ordered pairs of them (64 bytes: not-a-duplicate marks) follow.
// Without Content the content objects and their keys stay as they are.

// RekeyOptions configure Rekey.
type RekeyOptions struct {
	// Content re-encrypts every file's content under the new convergence secret.
	Content bool
	// Device names the rekeying device in the new root.
	Device string
	// Switch is called with the new root's number and hash right before the root is
	// stored: it stages the new header generation (keyring.WriteGeneration). Storing the
	// root makes the new keys current.
	Switch func(ctx context.Context, seq uint64, hash dedup.Locator) error
	// Progress reports bytes of content re-encrypted (stage "content") and metadata objects
	// written (stage "metadata"); total is known before the stage starts.
	Progress func(stage string, done, total int64)
}

// RekeyReport says what Rekey did.
type RekeyReport struct {
	FromRoot, Root uint64 // the root read under the old keys, the one written under the new
	MetaObjects    int    // tree and aux objects written under the new K_meta
	Contents       int    // distinct file contents re-encrypted (Content)
	Chunks         int    // chunks sealed under the new convergence secret
	Uploaded       int    // of them, new in the store (a rerun finds the others)
	ContentBytes   int64  // plaintext bytes read and sealed again
	Resumed        int    // contents taken from a checkpoint of an interrupted run
}

// ErrRekeyRace: another device stored a root while the rekey ran; nothing was switched.
var ErrRekeyRace = errors.New("another device stored a root while the rekey ran; nothing was switched (run imgfs rekey again)")

// Rekey writes the newest root's namespace under next as the next root (see above).
func Rekey(ctx context.Context, store backend.Store, old, next *keyring.Keys, opts RekeyOptions) (*RekeyReport, error) {
	if opts.Switch == nil {
		return nil, errors.New("core: Rekey needs a Switch")
	}
	seq, err := newestRoot(ctx, store)
	if err != nil {
		return nil, err
	}
	rootObj, err := readAll(ctx, store, dedup.RootName(seq), 16<<20)
	if err != nil {
		return nil, eio(fmt.Sprintf("reading root %d", seq), err)
	}
	plain, err := dedup.OpenRoot(old.MetaKey, seq, rootObj)
	if err != nil {
		return nil, eio(fmt.Sprintf("root %d", seq), err)
	}
	root, err := decodeRoot(plain)
	if err != nil || root.Seq != seq {
		return nil, errnoErr(syscall.EIO, "root %d is malformed", seq)
	}
	rep := &RekeyReport{FromRoot: seq, Root: seq + 1}
	load := func(kind string, loc dedup.Locator) ([]byte, error) {
		obj, err := readAll(ctx, store, dedup.MetaName(loc), dedup.MaxMetaSize+(64<<20))
		if err != nil {
			return nil, eio("reading metadata "+loc.String(), err)
		}
		p, err := dedup.OpenMeta(old.MetaKey, kind, loc, obj)
		if err != nil {
			return nil, eio("metadata "+loc.String(), err)
		}
		return p, nil
	}
	trees := make([]*tree, len(root.Shards))
	for i, s := range root.Shards {
		p, err := load("tree", s.Loc)
		if err != nil {
			return nil, err
		}
		if trees[i], err = decodeTree(p); err != nil {
			return nil, eio("tree "+s.Loc.String(), err)
		}
	}
	auxes := map[string][][2][]byte{} // table -> entries
	for _, a := range root.Aux {
		p, err := load("aux", a.Loc)
		if err != nil {
			return nil, err
		}
		at, err := decodeAux(p)
		table, _, ok := splitUnit(at.Table)
		if err != nil || !ok {
			return nil, errnoErr(syscall.EIO, "aux object %s is malformed", a.Loc)
		}
		auxes[table] = append(auxes[table], at.Entries...)
	}

	if opts.Content {
		ids, err := rekeyContent(ctx, store, next, trees, opts, rep)
		if err != nil {
			return nil, err
		}
		for table, entries := range auxes {
			for i := range entries {
				entries[i][0] = remapContentKey(entries[i][0], ids)
			}
			auxes[table] = entries
		}
	}

	total := int64(len(trees) + len(auxes)*auxUnits)
	put := func(kind string, p []byte) (dedup.Locator, error) {
		obj, loc, err := dedup.SealMeta(next.MetaKey, kind, p)
		if err != nil {
			return loc, eio("sealing metadata", err)
		}
		err = store.Put(ctx, dedup.MetaName(loc), bytes.NewReader(obj), int64(len(obj)))
		if err != nil && !errors.Is(err, backend.ErrExist) {
			return loc, eio("storing metadata", err)
		}
		rep.MetaObjects++
		if opts.Progress != nil {
			opts.Progress("metadata", int64(rep.MetaObjects), total)
		}
		return loc, nil
	}
	nr := &rootRec{Seq: seq + 1, Prev: dedup.Hash(rootObj), Time: time.Now().UnixNano(), Device: opts.Device}
	for i, s := range root.Shards {
		loc, err := put("tree", encodeTree(trees[i]))
		if err != nil {
			return nil, err
		}
		nr.Shards = append(nr.Shards, shardRef{Shard: s.Shard, Loc: loc})
	}
	lc := newLocalCrypto(next.LocalKey)
	tables := make([]string, 0, len(auxes))
	for t := range auxes {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, table := range tables {
		units := map[string]*auxTable{}
		for _, kv := range auxes[table] {
			u := auxUnit(table, lc.auxKey(table, kv[0]))
			if units[u] == nil {
				units[u] = &auxTable{Table: u}
			}
			units[u].Entries = append(units[u].Entries, kv)
		}
		names := make([]string, 0, len(units))
		for u := range units {
			names = append(names, u)
		}
		sort.Strings(names)
		for _, u := range names {
			loc, err := put("aux", encodeAux(units[u]))
			if err != nil {
				return nil, err
			}
			nr.Aux = append(nr.Aux, auxRef{Table: u, Loc: loc})
		}
	}
	obj, hash, err := dedup.SealRoot(next.MetaKey, nr.Seq, encodeRoot(nr))
	if err != nil {
		return nil, eio("sealing root", err)
	}
	if err := opts.Switch(ctx, nr.Seq, hash); err != nil {
		return nil, err
	}
	name := dedup.RootName(nr.Seq)
	if err := store.Put(ctx, name, bytes.NewReader(obj), int64(len(obj))); err != nil {
		if !errors.Is(err, backend.ErrExist) {
			return nil, eio("storing root", err)
		}
		if got, rerr := readAll(ctx, store, name, 16<<20); rerr != nil || !bytes.Equal(got, obj) {
			return nil, ErrRekeyRace
		}
	}
	return rep, nil
}

// newestRoot is the highest root number in the store.
func newestRoot(ctx context.Context, store backend.Store) (uint64, error) {
	var max uint64
	err := store.List(ctx, "r/", func(i backend.Info) error {
		if s, err := dedup.ParseRootName(i.Name); err == nil && s > max {
			max = s
		}
		return nil
	})
	if err != nil {
		return 0, eio("listing roots", err)
	}
	if max == 0 {
		return 0, errnoErr(syscall.EIO, "the store has no root to rekey")
	}
	return max, nil
}

// remapContentKey maps an aux key that is a content ID, or an ordered pair of them, to the
// new IDs; other keys are returned as they are.
func remapContentKey(k []byte, ids map[dedup.Locator]dedup.Locator) []byte {
	switch len(k) {
	case 32:
		if n, ok := ids[dedup.Locator(k)]; ok {
			return n[:]
		}
	case 64:
		a, aok := ids[dedup.Locator(k[:32])]
		b, bok := ids[dedup.Locator(k[32:])]
		if aok && bok {
			if bytes.Compare(b[:], a[:]) < 0 {
				a, b = b, a
			}
			return append(append(make([]byte, 0, 64), a[:]...), b[:]...)
		}
	}
	return k
}

// rekeyContent seals every distinct content of trees again under next's convergence
// secret, replaces the references in the trees, and returns old ID -> new ID.
func rekeyContent(ctx context.Context, store backend.Store, next *keyring.Keys, trees []*tree, opts RekeyOptions, rep *RekeyReport) (map[dedup.Locator]dedup.Locator, error) {
	chunker, err := dedup.NewChunker(next.ConvergenceSecret)
	if err != nil {
		return nil, err
	}
	done := map[dedup.Locator]dedup.Content{}
	var total int64
	seen := map[dedup.Locator]bool{}
	for _, t := range trees {
		for _, ti := range t.Inodes {
			if ti.Node.HasRef && !seen[ti.Node.Ref.ID()] {
				seen[ti.Node.Ref.ID()] = true
				total += ti.Node.Ref.Size()
			}
		}
	}
	ids := map[dedup.Locator]dedup.Locator{}
	ck, err := loadCheckpoint(ctx, store, next)
	if err != nil {
		return nil, err
	}
	for id, c := range ck.done {
		if seen[id] && chunksPresent(ctx, store, c) {
			done[id], ids[id] = c, c.ID()
			total -= c.Size() // not read again
			rep.Resumed++
		}
	}
	buf := make([]byte, dedup.ChunkMax)
	var sealed bytes.Buffer
	for _, t := range trees {
		for i := range t.Inodes {
			n := &t.Inodes[i].Node
			if !n.HasRef {
				continue
			}
			id := n.Ref.ID()
			c, ok := done[id]
			if !ok {
				if err := ck.maybeSave(ctx, store, next, done, false); err != nil {
					return nil, err
				}
				src := &storeContentReader{ctx: ctx, store: store, c: n.Ref}
				c, err = resealContent(ctx, store, next.ConvergenceSecret, chunker, src, n.Ref.Size(), buf, &sealed, rep, func(nb int64) {
					rep.ContentBytes += nb
					if opts.Progress != nil {
						opts.Progress("content", rep.ContentBytes, total)
					}
				})
				src.close()
				if err != nil {
					return nil, err
				}
				done[id] = c
				ids[id] = c.ID()
				rep.Contents++
				ck.pending += n.Ref.Size()
			}
			n.Ref = c
		}
	}
	return ids, ck.maybeSave(ctx, store, next, done, true)
}

// resealContent chunks size bytes from src with chunker (the loop of rechunk, without a
// base) and seals and uploads each chunk under cs.
func resealContent(ctx context.Context, store backend.Store, cs keyring.Secret, chunker *dedup.Chunker, src io.Reader, size int64,
	buf []byte, sealed *bytes.Buffer, rep *RekeyReport, progress func(int64)) (dedup.Content, error) {
	var out dedup.Content // an empty file has no chunks, as rechunk makes it
	pos, have := int64(0), 0
	for pos < size {
		var n int
		scanned := 0
		for {
			final := pos+int64(have) == size
			if have > dedup.ChunkMin || final {
				var ok bool
				if n, ok = chunker.CutFrom(buf[:have], scanned, final); ok {
					break
				}
				scanned = have
			}
			want := int(min(int64(have+sealReadStep), int64(dedup.ChunkMax), size-pos))
			if _, err := io.ReadFull(src, buf[have:want]); err != nil {
				return out, eio("reading content", err)
			}
			have = want
		}
		ref, err := sealUpload(ctx, store, cs, buf[:n], sealed, rep)
		if err != nil {
			return out, err
		}
		out = out.Append(ref)
		progress(int64(n))
		copy(buf, buf[n:have])
		have -= n
		pos += int64(n)
	}
	return out, nil
}

func sealUpload(ctx context.Context, store backend.Store, cs keyring.Secret, chunk []byte, sealed *bytes.Buffer, rep *RekeyReport) (dedup.Ref, error) {
	sealed.Reset()
	ref, err := dedup.Seal(cs, bytes.NewReader(chunk), int64(len(chunk)), sealed)
	if err != nil {
		return ref, localErr("sealing", err)
	}
	res, err := dedup.UploadWith(ctx, store, ref.Locator, bytes.NewReader(sealed.Bytes()), int64(sealed.Len()), dedup.UploadOptions{Hashed: true})
	if err != nil {
		return ref, eio("uploading content", err)
	}
	rep.Chunks++
	if res.Stored {
		rep.Uploaded++
	}
	return ref, nil
}

// storeContentReader streams a file's plaintext from its chunks in the store, each verified
// (locator, commitment, every segment) before any of its bytes are returned. Chunks up to
// 64 MiB are read into memory; larger ones (single-object files of format v1) go through a
// temporary file of ciphertext.
type storeContentReader struct {
	ctx   context.Context
	store backend.Store
	c     dedup.Content
	i     int       // next chunk
	cur   io.Reader // plaintext of the current chunk
	tmp   *os.File
}

const maxChunkInMemory = 64 << 20

func (r *storeContentReader) Read(p []byte) (int, error) {
	for {
		if r.cur != nil {
			n, err := r.cur.Read(p)
			if err == io.EOF {
				r.cur = nil
				if n > 0 {
					return n, nil
				}
				continue
			}
			return n, err
		}
		if r.i == r.c.Len() {
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			return 0, err
		}
	}
}

func (r *storeContentReader) next() error {
	ref := r.c.Chunk(r.i)
	off, n := r.c.ChunkOffset(r.i), r.c.ChunkSize(r.i) // a piece is part of its object
	r.i++
	name := dedup.ContentName(ref.Locator)
	objSize := dedup.ObjectSize(ref.Size)
	if objSize <= maxChunkInMemory {
		obj, err := readAll(r.ctx, r.store, name, objSize)
		if err != nil {
			return err
		}
		plain, err := dedup.Open(ref, obj)
		if err != nil {
			return err
		}
		r.cur = bytes.NewReader(plain[off : off+n])
		return nil
	}
	r.close()
	f, err := os.CreateTemp("", "imgfs-rekey-*")
	if err != nil {
		return err
	}
	os.Remove(f.Name())
	r.tmp = f
	rc, err := r.store.Get(r.ctx, name, 0, -1)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, io.LimitReader(rc, objSize+1))
	rc.Close()
	if err != nil {
		return err
	}
	rd, err := dedup.OpenVerifiedReader(ref, f, objSize)
	if err != nil {
		return err
	}
	r.cur = io.NewSectionReader(rd, off, n)
	return nil
}

func (r *storeContentReader) close() {
	if r.tmp != nil {
		r.tmp.Close()
		r.tmp = nil
	}
}

// FinishRekey deletes what the old keys left that gc does not collect: every root below the
// oldest root that opens under k (those were written under the old keys; devices that are
// behind rebuild their caches from the newest root anyway, keygen.go), the content
// checkpoints, and every presence record that does not open under k (devices re-create
// theirs at their next mount). It returns how many roots and presence records it deleted.
func FinishRekey(ctx context.Context, store backend.Store, k *keyring.Keys) (roots, presence int, err error) {
	var seqs []uint64
	if err := store.List(ctx, "r/", func(i backend.Info) error {
		if s, err := dedup.ParseRootName(i.Name); err == nil {
			seqs = append(seqs, s)
		}
		return nil
	}); err != nil {
		return 0, 0, eio("listing roots", err)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	first := -1
	for i, s := range seqs {
		obj, err := readAll(ctx, store, dedup.RootName(s), 16<<20)
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, 0, eio(fmt.Sprintf("reading root %d", s), err)
		}
		if _, err := dedup.OpenRoot(k.MetaKey, s, obj); err == nil {
			first = i
			break
		}
	}
	if first < 0 {
		return 0, 0, errnoErr(syscall.EIO, "no root opens under the new keys: the rekey did not switch")
	}
	for _, s := range seqs[:first] {
		if err := store.Delete(ctx, dedup.RootName(s)); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return roots, 0, eio("deleting an old root", err)
		}
		roots++
	}
	var ckNames []string
	if err := store.List(ctx, rekeyPrefix, func(i backend.Info) error {
		ckNames = append(ckNames, i.Name)
		return nil
	}); err != nil {
		return roots, 0, eio("listing rekey checkpoints", err)
	}
	for _, n := range ckNames {
		if err := store.Delete(ctx, n); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return roots, 0, eio("deleting a rekey checkpoint", err)
		}
	}
	var names []string
	if err := store.List(ctx, PresencePrefix, func(i backend.Info) error {
		names = append(names, i.Name)
		return nil
	}); err != nil {
		return roots, 0, eio("listing presence records", err)
	}
	for _, n := range names {
		b, err := readAll(ctx, store, n, 4096)
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err != nil {
			return roots, presence, eio("reading a presence record", err)
		}
		if _, err := dedup.OpenMeta(k.MetaKey, "presence", dedup.Hash(b), b); err == nil {
			continue
		}
		if err := store.Delete(ctx, n); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return roots, presence, eio("deleting an old presence record", err)
		}
		presence++
	}
	return roots, presence, nil
}
