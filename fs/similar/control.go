package similar

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/imgfs/imgfs/fs/control"
)

// Control-socket ops registered by Register.
const (
	OpSimilar = "similar"         // QueryRequest -> QueryResponse
	OpStatus  = "similar.status"  // -> Stats
	OpReindex = "similar.reindex" // -> {"queued": n}
	OpWait    = "similar.wait"    // waits until the backlog is empty -> Stats
)

// QueryRequest is the "similar" op's request. Paths are slash paths from the mount root.
type QueryRequest struct {
	Paths     []string `json:"paths,omitempty"`
	All       bool     `json:"all,omitempty"`
	Threshold float32  `json:"threshold,omitempty"` // 0: the mount's
	Top       int      `json:"top,omitempty"`       // 0: all
}

// QueryResult is the answer for one path.
type QueryResult struct {
	Path    string  `json:"path"`
	Matches []Match `json:"matches"`
	Error   string  `json:"error,omitempty"`
}

// QueryResponse is the "similar" op's result.
type QueryResponse struct {
	Threshold float32       `json:"threshold"`
	Results   []QueryResult `json:"results,omitempty"`
	Pairs     []PairOut     `json:"pairs,omitempty"`
	Backlog   int           `json:"backlog"`
}

// ReindexResponse is the "similar.reindex" op's result.
type ReindexResponse struct {
	Queued int `json:"queued"`
}

// Register adds the ops to a mount's control server.
func (x *Indexer) Register(srv *control.Server) {
	srv.Handle(OpSimilar, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var req QueryRequest
		if len(raw) > 0 && string(raw) != "null" {
			if err := json.Unmarshal(raw, &req); err != nil {
				return nil, fmt.Errorf("bad request: %v", err)
			}
		}
		return x.Serve(req)
	})
	srv.Handle(OpStatus, func(ctx context.Context, _ json.RawMessage) (any, error) {
		return x.Stats(), nil
	})
	srv.Handle(OpReindex, func(ctx context.Context, _ json.RawMessage) (any, error) {
		n, err := x.Reindex()
		return ReindexResponse{n}, err
	})
	srv.Handle(OpWait, func(ctx context.Context, _ json.RawMessage) (any, error) {
		if err := x.Wait(ctx); err != nil {
			return nil, err
		}
		return x.Stats(), nil
	})
	x.registerMarks(srv)
}

// Serve answers a QueryRequest (the "similar" op without the socket).
func (x *Indexer) Serve(req QueryRequest) (QueryResponse, error) {
	if req.Threshold < 0 || req.Threshold > 1 {
		return QueryResponse{}, fmt.Errorf("threshold %v out of range (0, 1]", req.Threshold)
	}
	th := req.Threshold // 0: the mount's (the graph: verified pairs down to the floor)
	resp := QueryResponse{Threshold: th, Backlog: x.Backlog()}
	if th == 0 {
		resp.Threshold = x.floor()
	}
	if req.All {
		resp.Pairs = x.AllPairs(th)
		return resp, nil
	}
	for _, p := range req.Paths {
		r := QueryResult{Path: trimSlash(p), Matches: []Match{}}
		ino, err := x.v.Resolve(p)
		if err == nil {
			var ms []Match
			ms, err = x.Query(ino, th, req.Top)
			if ms != nil {
				r.Matches = ms
			}
		}
		if err != nil {
			r.Error = err.Error()
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
