// Package similar is imgfs's near-duplicate indexer, free of FUSE (docs/similar.md): it
// embeds every sealed image off the write path and answers queries. One file per concern:
//
//	indexer.go   Config, the Indexer, its lifecycle and counters
//	queue.go     the persistent work queue and its workers (OnSealed, Wait, Reindex)
//	handoff.go   plaintext that sealing hands over (embedded without reading the file again)
//	embedfile.go reading and embedding one file
//	persist.go   the aux tables: loading at Start, storing embeddings
//	graph.go     the in-memory index and similarity graph
//	query.go     Query and AllPairs
//	tree.go      what `.similar/` shows (its bazil nodes are fs/similar_nodes.go)
//	control.go   the "similar" control-socket ops
//	marks.go, failures.go, verify.go, mirror.go, threshold.go: as named
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
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/imgfs/imgfs/embed/index"
	"github.com/imgfs/imgfs/fs/core"
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
	// ReadOnly (a read-only mount): embeddings, queue and failure records the indexer
	// computes are kept in memory (persist.go, memTables); marks cannot be changed.
	ReadOnly bool
	// VerifyFloor is the lowest score of a candidate pair that the verification stage
	// (verify.go) may confirm: 0: automatic (threshold.go); negative: off.
	VerifyFloor float32
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

	listingState
	handoffState
	marksState
	failureState
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

// Close stops the workers; queued work stays in the vault's queue for the next Start.
func (x *Indexer) Close() {
	x.mu.Lock()
	x.closed = true
	x.cond.Broadcast()
	x.mu.Unlock()
	x.wg.Wait()
}

// Threshold is the mount's similarity threshold.
func (x *Indexer) Threshold() float32 { return x.cfg.Threshold }

// Backlog is the number of files waiting for (or being) embedded.
func (x *Indexer) Backlog() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.queue) + x.busy + len(x.early)
}

// Stats are for `imgfs status` and tests.
type Stats struct {
	Embeddings int   `json:"embeddings"`
	Backlog    int   `json:"backlog"`
	Done       int64 `json:"done"`    // files processed since Start
	Skipped    int64 `json:"skipped"` // not images, since Start
	Stale      int   `json:"stale"`   // embeddings of another model (run --reindex)
	// FromPlaintext: files embedded from the plaintext sealing handed over (handoff.go),
	// since Start; the others were read back.
	FromPlaintext int64   `json:"from_plaintext"`
	Threshold     float32 `json:"threshold"`
	Model         string  `json:"model"`
}

// Stats returns counters.
func (x *Indexer) Stats() Stats {
	x.hmu.Lock()
	fromPlain := x.fromPlain
	x.hmu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	return Stats{Embeddings: x.idx.Len(), Backlog: len(x.queue) + x.busy + len(x.early), Done: x.done,
		Skipped: x.skipped, Stale: len(x.stale), Threshold: x.cfg.Threshold, Model: x.emb.ID(), FromPlaintext: fromPlain}
}
