package neardup

import (
	"math"
	"testing"
)

func TestScore(t *testing.T) {
	truth := []Entry{
		{File: "a", Group: "g1", Role: "ref"},
		{File: "b", Group: "g2", Role: "ref"},
		{File: "a1", Group: "g1", Role: "query", Transform: "x"},
		{File: "b1", Group: "g2", Role: "query", Transform: "y"},
	}
	// a1 ranks its reference first; b1 ranks the wrong one first.
	s := map[[2]int]float64{{2, 0}: 0.9, {2, 1}: 0.1, {3, 0}: 0.8, {3, 1}: 0.7}
	r := Score(truth, func(q, r int) float64 { return s[[2]int{q, r}] })
	// Ranked: 0.9 ok (P=1), 0.8 wrong, 0.7 ok (P=2/3), 0.1 wrong: AP = (1 + 2/3)/2.
	if want := (1 + 2.0/3) / 2; math.Abs(r.MuAP-want) > 1e-12 {
		t.Fatalf("muAP %v, want %v", r.MuAP, want)
	}
	if r.RP95 != 0.5 {
		t.Fatalf("R@P95 %v, want 0.5", r.RP95)
	}
	if r.Top1["x"] != 1 || r.Top1["y"] != 0 {
		t.Fatalf("top1 %v", r.Top1)
	}
	// Ties count as one step: all scores equal gives precision 2/4 for both hits.
	r = Score(truth, func(q, r int) float64 { return 1 })
	if math.Abs(r.MuAP-0.5) > 1e-12 {
		t.Fatalf("tied muAP %v, want 0.5", r.MuAP)
	}
}
