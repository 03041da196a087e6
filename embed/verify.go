package embed

import (
	"errors"
	"math"
)

// Verification of candidate pairs (docs/similar.md, Verification). The global vector of a
// photo pools its feature map into 9 cells, so a crop, a rotation or a strong edit moves its
// score into the range where unrelated photos also score. A pair found there is confirmed by
// comparing the two photos' feature maps cell by cell: each photo keeps a Local descriptor
// (the block_12_add map pooled to LocalGrid x LocalGrid cells, each cell a unit vector), the
// cells of one photo are matched to the other's (mutual nearest neighbours that are
// distinctive: the best match is clearly better than any match away from it), and the matches
// must agree on one geometric alignment: B = scale * A + shift on each axis, which covers
// crops, borders, stretches and (within a cell) small rotations. Unrelated photos rarely have
// many distinctive cell matches that agree on one alignment; edited copies have most cells.

// LocalGrid is the side of a Local descriptor's cell grid.
const LocalGrid = 7

// Local is a photo's spatial descriptor for verification: Grid x Grid cells of C channels
// (row-major, cell-major), each cell L2-normalised and quantised as round(127 * value).
type Local struct {
	Grid, C int
	Cells   []int8
}

// LocalOf pools fm to g x g cells by maximum (cell i spans rows i*H/g to (i+1)*H/g, as
// GridCells splits), subtracts the per-channel mean over the cells (what all
// cells share says nothing about where they match), normalises each cell and quantises it.
func LocalOf(fm FeatureMap, g int) Local {
	cells := GridCells(fm, g)
	vs := make([][]float32, len(cells))
	mean := make([]float32, fm.C)
	for i, c := range cells {
		vs[i] = PoolMax(c)
		for k, v := range vs[i] {
			mean[k] += v / float32(len(cells))
		}
	}
	l := Local{Grid: g, C: fm.C, Cells: make([]int8, 0, len(cells)*fm.C)}
	for _, v := range vs {
		for k := range v {
			v[k] -= mean[k]
		}
		Normalize(v)
		for _, x := range v {
			l.Cells = append(l.Cells, int8(math.Round(float64(127*x))))
		}
	}
	return l
}

// ErrLocalShape is returned when two Local descriptors cannot be compared.
var ErrLocalShape = errors.New("embed: local descriptors of different shapes")

// Verdict is what Verify found.
type Verdict struct {
	Matches int     // distinctive mutual cell matches
	Inliers int     // of them, those that agree with the best alignment
	ScaleX  float32 // the alignment: x_B = ScaleX*x_A + ShiftX (coordinates in [0, 1])
	ScaleY  float32
	ShiftX  float32
	ShiftY  float32
}

// VerifyParams tunes Verify; DefaultVerify was chosen on neardup DEV and the background set.
type VerifyParams struct {
	MinSim float32 // lowest cosine of a cell match
	Ratio  float32 // the best match must beat the best non-adjacent one by this factor
	Tol    float32 // inlier tolerance, in cells
	MinIn  int     // inliers needed for a pair to pass
}

// DefaultVerify is the verifier's setting (docs/similar.md, Verification).
var DefaultVerify = VerifyParams{MinSim: 0.5, Ratio: 0.8, Tol: 1, MinIn: 12}

// Verify compares two photos' Local descriptors under an axis-aligned alignment (no
// mirroring: pass the mirror image's descriptor for a mirrored pair).
func Verify(a, b Local, p VerifyParams) (Verdict, error) {
	if a.Grid != b.Grid || a.C != b.C || a.Grid < 2 || len(a.Cells) != a.Grid*a.Grid*a.C || len(b.Cells) != len(a.Cells) {
		return Verdict{}, ErrLocalShape
	}
	g, c := a.Grid, a.C
	n := g * g
	sim := make([]int32, n*n)
	for i := 0; i < n; i++ {
		ai := a.Cells[i*c : (i+1)*c]
		for j := 0; j < n; j++ {
			bj := b.Cells[j*c : (j+1)*c]
			var s int32
			for k, x := range ai {
				s += int32(x) * int32(bj[k])
			}
			sim[i*n+j] = s
		}
	}
	const unit = 127 * 127
	far := func(p, q int) bool { // cells more than one apart (Chebyshev)
		return abs(p/g-q/g) > 1 || abs(p%g-q%g) > 1
	}
	bestB := make([]int, n) // best cell of A for each cell of B
	for j := 0; j < n; j++ {
		bi := 0
		for i := 1; i < n; i++ {
			if sim[i*n+j] > sim[bi*n+j] {
				bi = i
			}
		}
		bestB[j] = bi
	}
	type match struct{ xa, ya, xb, yb float32 }
	var ms []match
	for i := 0; i < n; i++ {
		row := sim[i*n : (i+1)*n]
		j1 := 0
		for j := 1; j < n; j++ {
			if row[j] > row[j1] {
				j1 = j
			}
		}
		if bestB[j1] != i || float32(row[j1]) < p.MinSim*unit {
			continue
		}
		var s2 int32 = math.MinInt32
		for j := 0; j < n; j++ {
			if far(j, j1) && row[j] > s2 {
				s2 = row[j]
			}
		}
		if float32(s2) > p.Ratio*float32(row[j1]) {
			continue
		}
		ms = append(ms, match{float32(i%g) + 0.5, float32(i/g) + 0.5, float32(j1%g) + 0.5, float32(j1/g) + 0.5})
	}
	v := Verdict{Matches: len(ms)}
	count := func(sx, sy, tx, ty float32) int {
		in := 0
		for _, m := range ms {
			if abs32(sx*m.xa+tx-m.xb) <= p.Tol && abs32(sy*m.ya+ty-m.yb) <= p.Tol {
				in++
			}
		}
		return in
	}
	try := func(sx, sy, tx, ty float32) {
		if in := count(sx, sy, tx, ty); in > v.Inliers {
			v.Inliers, v.ScaleX, v.ScaleY = in, sx, sy
			v.ShiftX, v.ShiftY = tx/float32(g), ty/float32(g)
		}
	}
	try(1, 1, 0, 0)
	// Every pair of matches at least two cells apart on both axes proposes an alignment.
	for i := range ms {
		for j := i + 1; j < len(ms); j++ {
			m1, m2 := ms[i], ms[j]
			dxa, dya := m2.xa-m1.xa, m2.ya-m1.ya
			if abs32(dxa) < 2 || abs32(dya) < 2 {
				continue
			}
			sx, sy := (m2.xb-m1.xb)/dxa, (m2.yb-m1.yb)/dya
			if sx < 0.5 || sx > 2 || sy < 0.5 || sy > 2 || sx/sy < 0.6 || sx/sy > 1.67 {
				continue
			}
			try(sx, sy, (m1.xb+m2.xb-sx*(m1.xa+m2.xa))/2, (m1.yb+m2.yb-sy*(m1.ya+m2.ya))/2)
		}
	}
	return v, nil
}

// VerifyEmbeddings verifies a pair of photos under the alignment (plain, or one photo
// mirrored) in which their vectors are closest, with that alignment's Local descriptors.
// Verify is not symmetric (the distinctiveness test looks from the first photo, and which
// photo is mirrored matters), so the pair is checked both ways and the weaker verdict is
// returned: the result does not depend on the order in which the photos arrived.
func VerifyEmbeddings(a, b Embedding, p VerifyParams) (Verdict, error) {
	v, err := verifyAligned(a, b, p)
	if err != nil {
		return v, err
	}
	w, err := verifyAligned(b, a, p)
	if err != nil || w.Inliers < v.Inliers {
		return w, err
	}
	return v, nil
}

// verifyAligned is VerifyEmbeddings one way: a's descriptor against b's.
func verifyAligned(a, b Embedding, p VerifyParams) (Verdict, error) {
	if len(a.Vector) != len(b.Vector) || len(a.Mirror) != len(a.Vector) || len(b.Mirror) != len(b.Vector) {
		return Verdict{}, ErrLocalShape
	}
	plain := Cosine(a.Vector, b.Vector)
	ma, mb := Cosine(a.Mirror, b.Vector), Cosine(a.Vector, b.Mirror)
	la, lb := a.Local, b.Local
	if ma > plain && ma >= mb {
		la = a.LocalMirror
	} else if mb > plain {
		lb = b.LocalMirror
	}
	return Verify(la, lb, p)
}

// Pass reports whether the verdict confirms the pair under p.
func (v Verdict) Pass(p VerifyParams) bool { return v.Inliers >= p.MinIn }

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
