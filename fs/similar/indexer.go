// Package similar is imgfs's near-duplicate layer: the indexer that embeds every sealed
// image off the write path, the in-memory search index and similarity graph, the virtual
// `.similar/` tree (bazil nodes) and the "similar" control-socket ops.
//
// State lives only in the vault's encrypted aux tables (nothing query-dependent reaches the
// store, docs/security-tests.md T6/T9):
//
//	emb   content ID (32 bytes) -> index.Entry (model ID + float32 vector)
//	embx  content ID -> model ID: sealed content that is not a usable image (not retried)
//	embq  inode (8 bytes, big-endian) -> 0 or 1 (1 = recompute even if embedded): the queue
//
// Embeddings are keyed by content ID, so byte-identical copies share one embedding and a
// rename costs nothing. Paths are resolved at query time (core.Path), so renames and
// unlinks are followed without notification.
package similar

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/imgfs/imgfs/embed/index"
	"github.com/imgfs/imgfs/fs/core"
)

// Aux table names.
const (
	TableEmb     = "emb"
	TableNoImage = "embx"
	TableQueue   = "embq"
)

// Thresholds (cosine similarity of embed's default recipe, the better of the plain and the
// mirror alignment); see docs/similar.md. Without a configured threshold the indexer uses
// AutoThreshold (threshold.go) of the library's size at Start.
const (
	// DefaultThreshold is the automatic threshold of libraries up to about 2,500 photos.
	DefaultThreshold = MinAutoThreshold
	// SamePhotoThreshold and above: the same photo, lightly edited (tier "same"): the
	// automatic threshold's cap, fewer than 10 expected false matches up to ~190,000 photos.
	SamePhotoThreshold = MaxAutoThreshold
)

// MaxFileSize is the largest file the indexer reads (larger files are not embedded).
const MaxFileSize = 512 << 20

// Config configures an Indexer.
type Config struct {
	Embedder  Embedder
	Threshold float32 // 0: AutoThreshold of the number of photos at Start
	Workers   int     // 0: max(1, GOMAXPROCS/2)
	Logger    *slog.Logger
	// EntryValid is the kernel cache time of .similar/ entries and attributes (0: 1 s).
	EntryValid time.Duration
	// ReadOnly (a read-only mount): serve the stored index, embed nothing, write nothing.
	ReadOnly bool
	// VerifyFloor is the lowest score of a candidate pair that the verification stage
	// (verify.go) may confirm: 0: automatic (threshold.go); negative: off.
	VerifyFloor float32
}

// Match is one near-duplicate of a file.
type Match struct {
	Ino   core.Ino `json:"-"`
	Path  string   `json:"path"`  // slash-separated, from the mount root, no leading slash
	Score float32  `json:"score"` // cosine similarity; 1 for byte-identical copies
	Tier  string   `json:"tier"`  // "identical", "same" or "similar"
}

// Tier names a score.
func Tier(score float32, identical bool) string {
	switch {
	case identical:
		return "identical"
	case score >= SamePhotoThreshold:
		return "same"
	default:
		return "similar"
	}
}

// Indexer keeps the near-duplicate index of one mounted vault.
type Indexer struct {
	cfg  Config
	auto bool // cfg.Threshold is set by Start from the library's size (threshold.go)
	log  *slog.Logger
	emb  Embedder

	// verifyFloor: candidates from here up to the threshold are verified (verify.go).
	verifyFloor float32

	// addMu serialises addVector: two workers adding neighbours at once would otherwise
	// each query before the other's Add, and the later dropNodeLocked erased the edge the
	// earlier one found.
	addMu sync.Mutex

	mu      sync.Mutex
	cond    *sync.Cond
	v       Vault
	idx     *index.Index
	started bool
	closed  bool
	early   []core.Ino // OnSealed before Start

	queue   []qitem
	queued  map[core.Ino]bool
	running map[core.Ino]bool
	working map[index.ID]bool // content being embedded (a copy waits for it)
	busy    int
	inoID   map[core.Ino]index.ID      // the content an inode had when last seen
	inos    map[index.ID][]core.Ino    // reverse of inoID (may hold stale inodes)
	cids    map[index.ID][32]byte      // content ID of each indexed vector (its emb key)
	nbr     map[index.ID][]index.Match // graph: neighbours at cfg.Threshold
	noImage map[index.ID]bool
	stale   map[index.ID]bool // embeddings of another model, not yet recomputed
	gen     uint64
	round   uint64              // Reindex count
	redone  map[index.ID]uint64 // content recomputed in Reindex round n (copies skip it)
	skipped int64
	done    int64

	graphReady chan struct{}
	wg         sync.WaitGroup

	treeState
	marksState
	failureState
}

type qitem struct {
	ino   core.Ino
	force bool
}

// New returns an indexer; hand its OnSealed to core.Options, then call Start with the vault.
func New(cfg Config) (*Indexer, error) {
	if cfg.Embedder == nil {
		return nil, errors.New("similar: no embedder")
	}
	auto := cfg.Threshold == 0
	if auto {
		cfg.Threshold = DefaultThreshold // until Start counts the photos
	}
	if cfg.Threshold < -1 || cfg.Threshold > 1 {
		return nil, fmt.Errorf("similar: threshold %v out of range [-1, 1]", cfg.Threshold)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.EntryValid == 0 {
		cfg.EntryValid = time.Second
	}
	idx, err := index.New(index.Quantised, cfg.Embedder.Dim())
	if err != nil {
		return nil, err
	}
	x := &Indexer{
		cfg: cfg, auto: auto, log: cfg.Logger, emb: cfg.Embedder, idx: idx,
		queued: map[core.Ino]bool{}, running: map[core.Ino]bool{}, working: map[index.ID]bool{}, inoID: map[core.Ino]index.ID{}, inos: map[index.ID][]core.Ino{},
		nbr: map[index.ID][]index.Match{}, cids: map[index.ID][32]byte{}, verifyFloor: cfg.VerifyFloor, redone: map[index.ID]uint64{}, noImage: map[index.ID]bool{}, graphReady: make(chan struct{}),
	}
	x.cond = sync.NewCond(&x.mu)
	return x, nil
}

// Threshold is the mount's similarity threshold.
func (x *Indexer) Threshold() float32 { return x.cfg.Threshold }

func idOf(cid [32]byte) index.ID { return index.ID(binary.BigEndian.Uint64(cid[:8])) }

func inoKey(ino core.Ino) []byte { return binary.BigEndian.AppendUint64(nil, uint64(ino)) }

// OnSealed is core.Options.OnSealed: it queues ino for embedding (persistently once started).
func (x *Indexer) OnSealed(ino core.Ino) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.started {
		x.early = append(x.early, ino)
		return
	}
	x.enqueueLocked(ino, false, true)
}

func (x *Indexer) enqueueLocked(ino core.Ino, force, persist bool) {
	if x.closed || x.cfg.ReadOnly {
		return
	}
	if persist {
		v := []byte{0}
		if force {
			v[0] = 1
		}
		if err := x.v.PutAux(TableQueue, inoKey(ino), v); err != nil {
			x.log.Warn("similar: queue", "ino", ino, "err", err)
		}
	}
	if x.queued[ino] {
		if force {
			for i := range x.queue {
				if x.queue[i].ino == ino {
					x.queue[i].force = true
				}
			}
		}
		return
	}
	x.queued[ino] = true
	x.queue = append(x.queue, qitem{ino, force})
	x.cond.Broadcast()
}

// Start loads the index from the vault's aux tables, queues what is missing, and starts
// the workers. The similarity graph is built in the background (GraphReady).
func (x *Indexer) Start(v Vault) error {
	model := x.emb.ID()
	type loaded struct {
		id  index.ID
		cid [32]byte
		vec []float32
	}
	var ents []loaded
	stale := map[index.ID]bool{}
	err := v.ForEachAux(TableEmb, func(k, val []byte) error {
		if len(k) != 32 {
			return nil
		}
		e, err := index.DecodeEntry(val)
		if err != nil {
			x.log.Warn("similar: dropping a corrupt embedding", "err", err)
			return nil
		}
		var cid [32]byte
		copy(cid[:], k)
		if e.Model != model || len(e.Vector) != x.emb.Dim() {
			stale[idOf(cid)] = true
			return nil
		}
		ents = append(ents, loaded{idOf(cid), cid, e.Vector})
		return nil
	})
	if err != nil {
		return fmt.Errorf("similar: load embeddings: %w", err)
	}
	noImage := map[index.ID]bool{}
	if err := v.ForEachAux(TableNoImage, func(k, _ []byte) error {
		if len(k) == 32 {
			noImage[idOf([32]byte(k))] = true
		}
		return nil
	}); err != nil {
		return fmt.Errorf("similar: load: %w", err)
	}
	if err := x.loadFailures(v); err != nil {
		return fmt.Errorf("similar: load failures: %w", err)
	}
	live := map[index.ID]bool{}
	inoID := map[core.Ino]index.ID{}
	inos := map[index.ID][]core.Ino{}
	if err := v.ForEachFile(func(ino core.Ino, cid [32]byte) error {
		id := idOf(cid)
		live[id] = true
		inoID[ino] = id
		inos[id] = append(inos[id], ino)
		return nil
	}); err != nil {
		return fmt.Errorf("similar: list files: %w", err)
	}
	x.idx.Grow(len(ents))
	var orphans [][32]byte
	for _, e := range ents {
		if !live[e.id] {
			orphans = append(orphans, e.cid)
			continue
		}
		x.idx.Add(e.id, e.vec)
		x.cids[e.id] = e.cid
	}
	if !x.cfg.ReadOnly {
		for _, cid := range orphans {
			v.DeleteAux(TableEmb, cid[:])
		}
	}
	var q []qitem
	if err := v.ForEachAux(TableQueue, func(k, val []byte) error {
		if len(k) == 8 {
			q = append(q, qitem{core.Ino(binary.BigEndian.Uint64(k)), len(val) > 0 && val[0] == 1})
		}
		return nil
	}); err != nil {
		return fmt.Errorf("similar: load queue: %w", err)
	}

	if x.cfg.ReadOnly {
		q = nil
	}
	if err := x.loadMarks(v, live); err != nil {
		return err
	}
	x.mu.Lock()
	x.v = v
	photos := 0
	for id := range live {
		if !noImage[id] {
			photos++
		}
	}
	x.setThresholds(photos)
	x.inoID, x.inos, x.noImage, x.stale = inoID, inos, noImage, stale
	x.started = true
	for _, it := range q {
		x.enqueueLocked(it.ino, it.force, false)
	}
	// Files sealed while no indexer ran (or before a crash persisted the queue entry).
	missing := 0
	for ino, id := range inoID {
		if !x.idx.Has(id) && !noImage[id] && !x.queued[ino] && !x.cfg.ReadOnly {
			x.enqueueLocked(ino, false, true)
			missing++
		}
	}
	for _, ino := range x.early {
		x.enqueueLocked(ino, false, true)
	}
	x.early = nil
	x.mu.Unlock()
	x.log.Info("similar: index loaded", "embeddings", x.idx.Len(), "orphans_dropped", len(orphans),
		"queued", len(q)+missing, "threshold", x.cfg.Threshold, "verify_floor", x.floor())
	if len(stale) > 0 {
		x.log.Warn("similar: embeddings from another model are being recomputed in the background", "count", len(stale))
	}
	for i := 0; i < x.cfg.Workers && !x.cfg.ReadOnly; i++ {
		x.wg.Add(1)
		go x.worker()
	}
	x.wg.Add(1)
	go x.buildGraph()
	return nil
}

// buildGraph computes every loaded vector's neighbours (all pairs at the threshold).
func (x *Indexer) buildGraph() {
	defer x.wg.Done()
	defer close(x.graphReady)
	t0 := time.Now()
	f := x.floor()
	pairs := x.keepVerified(bestPairs(append(x.idx.AllPairs(f), x.mirrorPairs(f)...)), nil)
	x.mu.Lock()
	for _, p := range pairs {
		x.addEdgeLocked(p.A, p.B, p.Score)
	}
	x.gen++
	x.mu.Unlock()
	x.log.Info("similar: graph built", "pairs", len(pairs), "took", time.Since(t0).Round(time.Millisecond))
}

// GraphReady is closed once the graph of the embeddings loaded at Start is built.
func (x *Indexer) GraphReady() <-chan struct{} { return x.graphReady }

func (x *Indexer) addEdgeLocked(a, b index.ID, s float32) {
	set := func(from, to index.ID) {
		ns := x.nbr[from]
		for i := range ns {
			if ns[i].ID == to {
				ns[i].Score = max(ns[i].Score, s) // the better of the two alignments
				return
			}
		}
		x.nbr[from] = append(ns, index.Match{ID: to, Score: s})
	}
	set(a, b)
	set(b, a)
}

func (x *Indexer) dropNodeLocked(id index.ID) {
	for _, m := range x.nbr[id] {
		ns := x.nbr[m.ID]
		for i := range ns {
			if ns[i].ID == id {
				ns = append(ns[:i], ns[i+1:]...)
				break
			}
		}
		if len(ns) == 0 {
			delete(x.nbr, m.ID)
		} else {
			x.nbr[m.ID] = ns
		}
	}
	delete(x.nbr, id)
}

// Close stops the workers; queued work stays in the vault's queue for the next Start.
func (x *Indexer) Close() {
	x.mu.Lock()
	x.closed = true
	x.cond.Broadcast()
	x.mu.Unlock()
	x.wg.Wait()
}

func (x *Indexer) worker() {
	defer x.wg.Done()
	for {
		x.mu.Lock()
		for len(x.queue) == 0 && !x.closed {
			x.cond.Wait()
		}
		if x.closed {
			x.mu.Unlock()
			return
		}
		it := x.queue[0]
		x.queue = x.queue[1:]
		delete(x.queued, it.ino)
		x.busy++
		x.running[it.ino] = true
		x.mu.Unlock()

		x.process(it)

		x.mu.Lock()
		x.busy--
		delete(x.running, it.ino)
		x.done++
		x.gen++
		x.cond.Broadcast()
		x.mu.Unlock()
	}
}

func (x *Indexer) process(it qitem) {
	v := x.v
	defer func() {
		x.mu.Lock()
		requeued := x.queued[it.ino]
		x.mu.Unlock()
		if !requeued {
			v.DeleteAux(TableQueue, inoKey(it.ino))
		}
	}()
	cid, ok, err := v.ContentID(it.ino)
	if err != nil || !ok {
		// Unlinked, not a regular file, or changed again (a new OnSealed follows).
		return
	}
	id := idOf(cid)
	x.mu.Lock()
	for x.working[id] && !x.closed {
		x.cond.Wait() // a byte-identical copy is being embedded: reuse its result
	}
	x.setInoLocked(it.ino, id)
	again := it.force && x.redone[id] != x.round
	have := x.idx.Has(id) && !again
	skip := x.noImage[id] && !again
	if again {
		x.redone[id] = x.round
	}
	if !have && !skip {
		x.working[id] = true
	}
	x.mu.Unlock()
	if have || skip {
		return
	}
	defer func() {
		x.mu.Lock()
		delete(x.working, id)
		x.cond.Broadcast()
		x.mu.Unlock()
	}()
	ent, err := x.embedIno(it.ino)
	if err != nil {
		var nie notImageError
		if errors.As(err, &nie) {
			x.log.Info("similar: not an image, skipped", "ino", it.ino, "reason", nie.msg)
			x.noteNotImage(it.ino, cid, nie.msg, nie.image)
			v.PutAux(TableNoImage, cid[:], []byte(x.emb.ID()))
			x.mu.Lock()
			x.noImage[id] = true
			x.skipped++
			x.mu.Unlock()
			return
		}
		// A read error: logged once; the file is retried at the next mount (Start queues
		// every file with neither an embedding nor a not-an-image mark).
		x.log.Warn("similar: cannot read file, skipped until the next mount", "ino", it.ino, "err", err)
		x.noteReadError(it.ino, err)
		return
	}
	// The content may have changed while we read it: only store what we read.
	cid2, ok, err := v.ContentID(it.ino)
	if err != nil || !ok || cid2 != cid {
		return
	}
	b, err := index.EncodeEntry(ent)
	if err != nil {
		x.log.Warn("similar: bad embedding", "ino", it.ino, "err", err)
		return
	}
	if err := v.PutAux(TableEmb, cid[:], b); err != nil {
		x.log.Warn("similar: store embedding", "ino", it.ino, "err", err)
		return
	}
	x.mu.Lock()
	x.cids[id] = cid
	x.mu.Unlock()
	x.addVector(id, ent)
}

// addVector puts id's entry (its vector; its mirror vector and Local descriptors, or nil)
// into the index and the graph.
func (x *Indexer) addVector(id index.ID, ent index.Entry) {
	x.addMu.Lock()
	defer x.addMu.Unlock()
	x.idx.Add(id, ent.Vector)
	ms := x.neighbours(id, ent.Mirror, x.floor())
	ps := make([]index.Pair, len(ms))
	for i, m := range ms {
		ps[i] = index.Pair{A: id, B: m.ID, Score: m.Score}
	}
	ps = x.keepVerified(ps, &ent)
	x.mu.Lock()
	x.dropNodeLocked(id)
	for _, p := range ps {
		x.addEdgeLocked(id, p.B, p.Score)
	}
	delete(x.noImage, id)
	delete(x.stale, id)
	x.gen++
	x.mu.Unlock()
}

func (x *Indexer) setInoLocked(ino core.Ino, id index.ID) {
	if old, ok := x.inoID[ino]; ok {
		if old == id {
			return
		}
		x.removeInoLocked(old, ino)
	}
	x.inoID[ino] = id
	x.inos[id] = append(x.inos[id], ino)
}

func (x *Indexer) removeInoLocked(id index.ID, ino core.Ino) {
	l := x.inos[id]
	for i, o := range l {
		if o == ino {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(x.inos, id)
	} else {
		x.inos[id] = l
	}
}

type notImageError struct {
	msg   string
	image bool // the content starts like an image format
}

func (e notImageError) Error() string { return "not an image: " + e.msg }

// embedIno embeds ino's content: its entry, with the mirror vector and the Local
// descriptors when the Embedder computes them (else nil).
func (x *Indexer) embedIno(ino core.Ino) (index.Entry, error) {
	r, size, err := x.v.OpenReader(ino)
	if err != nil {
		return index.Entry{}, err
	}
	defer r.Close()
	if size > MaxFileSize {
		return index.Entry{}, notImageError{msg: fmt.Sprintf("%d bytes is over the %d-byte limit", size, MaxFileSize)}
	}
	var head [16]byte
	n, err := r.ReadAt(head[:], 0)
	if n == 0 && err != nil && err != io.EOF {
		return index.Entry{}, err
	}
	if !looksLikeImage(head[:n]) {
		return index.Entry{}, notImageError{msg: reasonUnknownFormat}
	}
	er := &errReader{r: io.NewSectionReader(r, 0, size)}
	ent, err := x.embedEntry(er)
	if er.err != nil && er.err != io.EOF {
		return index.Entry{}, er.err // a read error, not the image's fault
	}
	if err != nil {
		return index.Entry{}, notImageError{msg: err.Error(), image: true}
	}
	return ent, nil
}

// errReader remembers the underlying reader's error, to tell read failures from bad images.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// looksLikeImage checks the magic numbers of the formats embed decodes, so the indexer does
// not read whole non-image files.
func looksLikeImage(h []byte) bool {
	has := func(p string) bool { return len(h) >= len(p) && string(h[:len(p)]) == p }
	switch {
	case has("\xff\xd8\xff"), has("\x89PNG\r\n\x1a\n"), has("GIF87a"), has("GIF89a"),
		has("BM"), has("II*\x00"), has("MM\x00*"):
		return true
	case has("RIFF") && len(h) >= 12 && string(h[8:12]) == "WEBP":
		return true
	}
	return false
}

// Backlog is the number of files waiting for (or being) embedded.
func (x *Indexer) Backlog() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.queue) + x.busy + len(x.early)
}

// Stats are for `imgfs status` and tests.
type Stats struct {
	Embeddings int     `json:"embeddings"`
	Backlog    int     `json:"backlog"`
	Done       int64   `json:"done"`    // files processed since Start
	Skipped    int64   `json:"skipped"` // not images, since Start
	Stale      int     `json:"stale"`   // embeddings of another model (run --reindex)
	Threshold  float32 `json:"threshold"`
	Model      string  `json:"model"`
}

// Stats returns counters.
func (x *Indexer) Stats() Stats {
	x.mu.Lock()
	defer x.mu.Unlock()
	return Stats{Embeddings: x.idx.Len(), Backlog: len(x.queue) + x.busy + len(x.early), Done: x.done,
		Skipped: x.skipped, Stale: len(x.stale), Threshold: x.cfg.Threshold, Model: x.emb.ID()}
}

// Wait returns when the queue is empty and no file is being embedded (for `imgfs sync`),
// or when ctx ends.
//
// It first queues every sealed file that has neither an embedding nor a not-an-image mark:
// the core may deliver OnSealed from a goroutine after its own Sync returned, and this
// makes `imgfs sync` independent of that timing.
func (x *Indexer) Wait(ctx context.Context) error {
	x.catchUp()
	stop := context.AfterFunc(ctx, func() {
		x.mu.Lock()
		x.cond.Broadcast()
		x.mu.Unlock()
	})
	defer stop()
	x.mu.Lock()
	defer x.mu.Unlock()
	for len(x.queue)+x.busy+len(x.early) > 0 && !x.closed {
		if err := ctx.Err(); err != nil {
			return err
		}
		x.cond.Wait()
	}
	return ctx.Err()
}

// catchUp queues sealed files the indexer has not seen (see Wait).
func (x *Indexer) catchUp() {
	x.mu.Lock()
	v, ok := x.v, x.started && !x.cfg.ReadOnly && !x.closed
	x.mu.Unlock()
	if !ok {
		return
	}
	type f struct {
		ino core.Ino
		id  index.ID
	}
	var fs []f
	if err := v.ForEachFile(func(ino core.Ino, cid [32]byte) error {
		fs = append(fs, f{ino, idOf(cid)})
		return nil
	}); err != nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range fs {
		if !x.idx.Has(e.id) && !x.noImage[e.id] && !x.queued[e.ino] && !x.running[e.ino] {
			x.enqueueLocked(e.ino, false, true)
		}
	}
}

// Reindex queues every sealed file for embedding again (after a model change), with force
// set, and returns how many it queued.
func (x *Indexer) Reindex() (int, error) {
	var inos []core.Ino
	if err := x.v.ForEachFile(func(ino core.Ino, _ [32]byte) error {
		inos = append(inos, ino)
		return nil
	}); err != nil {
		return 0, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.round++
	for _, ino := range inos {
		x.enqueueLocked(ino, true, true)
	}
	return len(inos), nil
}

// ErrNotFound is returned by Query for a path that is not an indexed file.
var ErrNotFound = errors.New("not an indexed image")

// live returns ino's path if ino still exists and still has content id.
func (x *Indexer) live(ino core.Ino, id index.ID) (string, bool) {
	cid, ok, err := x.v.ContentID(ino)
	if err != nil || !ok || idOf(cid) != id {
		return "", false
	}
	p, err := x.v.Path(ino)
	if err != nil || inTrash(p) {
		return "", false // deleted by imgfs review: not a match any more (marks.go)
	}
	return trimSlash(p), true
}

func trimSlash(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	return p
}

// Query returns ino's near-duplicates, best first (ties by path): byte-identical copies
// (score 1), then matches at or above threshold (threshold 0 means the mount's; a threshold
// below the mount's searches the index instead of the graph), at most top (0: all).
// ino itself is left out; unlinked and changed files are left out.
func (x *Indexer) Query(ino core.Ino, threshold float32, top int) ([]Match, error) {
	graph, threshold := x.queryPlan(threshold)
	cid, ok, err := x.v.ContentID(ino)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w (not sealed yet: run imgfs sync)", ErrNotFound)
	}
	id := idOf(cid)
	var cands []index.Match
	if !graph {
		cands = x.neighbours(id, x.storedMirror(cid), threshold)
	}
	x.mu.Lock()
	x.setInoLocked(ino, id)
	if graph {
		for _, m := range x.nbr[id] {
			if m.Score >= threshold {
				cands = append(cands, m)
			}
		}
	}
	type cand struct {
		ino   core.Ino
		id    index.ID
		score float32
	}
	var cs []cand
	for _, o := range x.inos[id] {
		if o != ino && !x.markedLocked(id, id) {
			cs = append(cs, cand{o, id, 1})
		}
	}
	for _, m := range cands {
		if x.markedLocked(id, m.ID) {
			continue // "not a duplicate" (marks.go)
		}
		for _, o := range x.inos[m.ID] {
			cs = append(cs, cand{o, m.ID, m.Score})
		}
	}
	x.mu.Unlock()
	var out []Match
	seen := map[core.Ino]bool{ino: true}
	for _, c := range cs {
		if seen[c.ino] {
			continue
		}
		seen[c.ino] = true
		p, ok := x.live(c.ino, c.id)
		if !ok {
			continue
		}
		out = append(out, Match{Ino: c.ino, Path: p, Score: c.score, Tier: Tier(c.score, c.id == id)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		return out[i].Path < out[j].Path
	})
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out, nil
}

// hasMatch reports whether ino has at least one near-duplicate at the mount's threshold.
func (x *Indexer) hasMatch(ino core.Ino) bool {
	ms, err := x.Query(ino, 0, 1)
	return err == nil && len(ms) > 0
}

// PairOut is one pair of AllPairs.
type PairOut struct {
	A     string  `json:"a"`
	B     string  `json:"b"`
	Score float32 `json:"score"`
	Tier  string  `json:"tier"`
}

// AllPairs returns every near-duplicate pair of live files (threshold 0: the mount's),
// best first; byte-identical copies pair with score 1.
func (x *Indexer) AllPairs(threshold float32) []PairOut {
	graph, threshold := x.queryPlan(threshold)
	var edges []index.Pair
	if !graph {
		edges = bestPairs(append(x.idx.AllPairs(threshold), x.mirrorPairs(threshold)...))
	}
	x.mu.Lock()
	if graph {
		for a, ns := range x.nbr {
			for _, m := range ns {
				if a < m.ID && m.Score >= threshold {
					edges = append(edges, index.Pair{A: a, B: m.ID, Score: m.Score})
				}
			}
		}
	}
	inos := make(map[index.ID][]core.Ino, len(x.inos))
	for id, l := range x.inos {
		inos[id] = append([]core.Ino(nil), l...)
	}
	// Pairs marked "not a duplicate" (marks.go) are left out.
	kept := edges[:0]
	for _, e := range edges {
		if !x.markedLocked(e.A, e.B) {
			kept = append(kept, e)
		}
	}
	edges = kept
	selfMarked := map[index.ID]bool{}
	for id := range inos {
		if x.markedLocked(id, id) {
			selfMarked[id] = true
		}
	}
	x.mu.Unlock()
	paths := map[index.ID][]string{}
	pathsOf := func(id index.ID) []string {
		if p, ok := paths[id]; ok {
			return p
		}
		var ps []string
		for _, o := range inos[id] {
			if p, ok := x.live(o, id); ok {
				ps = append(ps, p)
			}
		}
		sort.Strings(ps)
		paths[id] = ps
		return ps
	}
	var out []PairOut
	for id := range inos {
		if selfMarked[id] {
			continue
		}
		ps := pathsOf(id)
		for i := 0; i < len(ps); i++ {
			for j := i + 1; j < len(ps); j++ {
				out = append(out, PairOut{ps[i], ps[j], 1, "identical"})
			}
		}
	}
	for _, e := range edges {
		for _, pa := range pathsOf(e.A) {
			for _, pb := range pathsOf(e.B) {
				a, b := pa, pb
				if b < a {
					a, b = b, a
				}
				out = append(out, PairOut{a, b, e.Score, Tier(e.Score, false)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		if out[i].A != out[j].A {
			return out[i].A < out[j].A
		}
		return out[i].B < out[j].B
	})
	return out
}
