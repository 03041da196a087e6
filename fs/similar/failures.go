package similar

// Files that could not be embedded, and why (docs/similar.md, "Files that are not indexed").
//
// A file counts when it should have been an image: its content starts like one (JPEG, PNG,
// GIF, BMP, TIFF, WebP) but does not decode, or its name says image (.jpg, .png, .heic,
// .cr2, ...) but its content is not one the decoder reads. Other non-images (text, video)
// are not failures. Decode failures are kept in the aux table below, so every mount, and
// `imgfs similar --failed`, lists them; a read error is kept in memory only (the file is
// retried at the next mount).

import (
	"encoding/json"
	"errors"
	"path"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/imgfs/imgfs/embed/index"
	"github.com/imgfs/imgfs/fs/core"
)

// TableFailed maps a content ID (32 bytes) to a failure record (encodeFailure).
const TableFailed = "embf"

// OpFailed is the control op that lists the failures: -> []Failure.
const OpFailed = "similar.failed"

// Failure is a file of the mount that is not in the near-duplicate index, and why.
type Failure struct {
	Path   string `json:"path"` // slash-separated, from the mount root
	Reason string `json:"reason"`
}

// maxReasonLen bounds a stored reason (decoder messages are one short line).
const maxReasonLen = 300

// failureRecord is what TableFailed stores for a content ID.
type failureRecord struct {
	Model  string `json:"model"`
	Reason string `json:"reason"`
}

func encodeFailure(r failureRecord) []byte {
	r.Reason = cutReason(r.Reason)
	b, _ := json.Marshal(r)
	return b
}

// cutReason makes s valid UTF-8 of at most maxReasonLen bytes, cut at a rune boundary (so
// that it reads back as it was written).
func cutReason(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= maxReasonLen {
		return s
	}
	s = s[:maxReasonLen]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func decodeFailure(b []byte) (failureRecord, error) {
	var r failureRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return failureRecord{}, err
	}
	if r.Reason == "" || len(r.Reason) > maxReasonLen || len(r.Model) > 200 {
		return failureRecord{}, errors.New("similar: bad failure record")
	}
	return r, nil
}

// reasonUnknownFormat is the indexer's reason for content that starts like no image format.
const reasonUnknownFormat = "unknown format"

// imageExts are names that promise an image, including formats the decoder does not read
// (HEIC, RAW): such a file is reported, not silently left out.
var imageExts = map[string]bool{
	".jpg": true, ".jpeg": true, ".jpe": true, ".jfif": true, ".png": true, ".gif": true,
	".bmp": true, ".tif": true, ".tiff": true, ".webp": true, ".heic": true, ".heif": true,
	".avif": true, ".jxl": true, ".dng": true, ".cr2": true, ".cr3": true, ".nef": true,
	".arw": true, ".orf": true, ".rw2": true, ".raf": true,
}

func namedLikeImage(p string) bool { return imageExts[strings.ToLower(path.Ext(p))] }

// failureState is the Indexer's part for failures (guarded by Indexer.mu).
type failureState struct {
	failed  map[index.ID]string // by content: why it is not embedded
	readErr map[core.Ino]string // read errors since Start, by inode
}

// loadFailures reads TableFailed (called by Start before the workers run).
func (x *Indexer) loadFailures(v Vault) error {
	failed := map[index.ID]string{}
	err := v.ForEachAux(TableFailed, func(k, val []byte) error {
		if len(k) != 32 {
			return nil
		}
		r, err := decodeFailure(val)
		if err != nil {
			return nil // a damaged record: the file is simply not listed
		}
		failed[idOf([32]byte(k))] = r.Reason
		return nil
	})
	x.mu.Lock()
	x.failed, x.readErr = failed, map[core.Ino]string{}
	x.mu.Unlock()
	return err
}

// noteNotImage records why ino's content (cid) is not embedded, when it should have been
// an image: image is true when its first bytes are an image format's.
func (x *Indexer) noteNotImage(ino core.Ino, cid [32]byte, reason string, image bool) {
	if !image {
		p, err := x.v.Path(ino)
		if err != nil || !namedLikeImage(p) {
			return
		}
		if reason == reasonUnknownFormat {
			reason = "not an image the decoder reads (JPEG, PNG, GIF, WebP, BMP or TIFF): its first bytes are none of these"
		}
	}
	reason = cutReason(reason)
	if !x.cfg.ReadOnly {
		if err := x.v.PutAux(TableFailed, cid[:], encodeFailure(failureRecord{Model: x.emb.ID(), Reason: reason})); err != nil {
			x.log.Warn("similar: store failure record", "ino", ino, "err", err)
		}
	}
	id := idOf(cid)
	x.mu.Lock()
	if x.failed == nil {
		x.failed = map[index.ID]string{}
	}
	x.failed[id] = reason
	x.mu.Unlock()
}

// noteReadError records a read error of ino (kept until the next mount retries it).
func (x *Indexer) noteReadError(ino core.Ino, err error) {
	x.mu.Lock()
	if x.readErr == nil {
		x.readErr = map[core.Ino]string{}
	}
	x.readErr[ino] = "read error, retried at the next mount: " + err.Error()
	x.mu.Unlock()
}

// Failures lists the files of the mount that could not be embedded, by path. A file whose
// content changed, or that was embedded since, is left out.
func (x *Indexer) Failures() []Failure {
	type cand struct {
		ino    core.Ino
		id     index.ID
		reason string
	}
	var cs []cand
	x.mu.Lock()
	for id, reason := range x.failed {
		if x.idx.Has(id) {
			continue
		}
		for _, ino := range x.inos[id] {
			cs = append(cs, cand{ino, id, reason})
		}
	}
	for ino, reason := range x.readErr {
		if id, ok := x.inoID[ino]; ok && !x.idx.Has(id) {
			cs = append(cs, cand{ino, id, reason})
		}
	}
	x.mu.Unlock()
	out := []Failure{}
	seen := map[core.Ino]bool{}
	for _, c := range cs {
		if seen[c.ino] {
			continue
		}
		if p, ok := x.live(c.ino, c.id); ok {
			seen[c.ino] = true
			out = append(out, Failure{Path: p, Reason: c.reason})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
