package review

import (
	"context"

	"github.com/imgfs/imgfs/fs/control"
	"github.com/imgfs/imgfs/fs/similar"
)

// ControlBackend talks to the daemon serving mountpoint over its control socket (the ops
// of fs/similar).
func ControlBackend(mountpoint string) Backend { return controlBackend{mountpoint} }

type controlBackend struct{ mp string }

func (c controlBackend) Pairs(ctx context.Context) ([]similar.PairOut, int, error) {
	var resp similar.QueryResponse
	err := control.CallContext(ctx, c.mp, similar.OpSimilar, similar.QueryRequest{All: true}, &resp)
	return resp.Pairs, resp.Backlog, err
}

func (c controlBackend) Mark(ctx context.Context, pairs []similar.PairRef) (int, error) {
	var resp similar.MarkResponse
	err := control.CallContext(ctx, c.mp, similar.OpMark, similar.MarkRequest{Pairs: pairs}, &resp)
	return resp.Changed, err
}
