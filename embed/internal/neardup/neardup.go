// Package neardup reads the neardup benchmark's truth.tsv and scores (query, reference)
// similarity scores with its protocol: muAP over all pairs ranked together (tied scores one
// step, recall over the number of queries) and R@P95, as neardup/score.py computes them.
package neardup

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Entry is one row of truth.tsv.
type Entry struct {
	File, Group, Transform, Difficulty, Role string
}

// ReadTruth reads truth.tsv.
func ReadTruth(path string) ([]Entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	col := map[string]int{}
	for i, h := range strings.Split(lines[0], "\t") {
		col[h] = i
	}
	for _, k := range []string{"file", "group", "transform", "difficulty", "role"} {
		if _, ok := col[k]; !ok {
			return nil, fmt.Errorf("%s: no %q column", path, k)
		}
	}
	var out []Entry
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) < len(col) {
			return nil, fmt.Errorf("%s: short line %q", path, l)
		}
		out = append(out, Entry{f[col["file"]], f[col["group"]], f[col["transform"]], f[col["difficulty"]], f[col["role"]]})
	}
	if len(out) == 0 {
		return nil, errors.New(path + ": empty")
	}
	return out, nil
}

// Result is the ranking quality of a finder.
type Result struct {
	MuAP, RP95 float64
	// Top1 is, per transform, the share of queries whose correct reference outscores
	// every wrong one.
	Top1 map[string]float64
}

// Score ranks every (query, reference) pair by sim(query index, reference index).
func Score(truth []Entry, sim func(q, r int) float64) Result {
	type item struct {
		s  float64
		ok bool
	}
	var qs, rs []int
	for i, e := range truth {
		switch e.Role {
		case "query":
			qs = append(qs, i)
		case "ref":
			rs = append(rs, i)
		}
	}
	items := make([]item, 0, len(qs)*len(rs))
	hit := map[string][2]int{}
	for _, q := range qs {
		bestOK, bestWrong := -1e9, -1e9
		for _, r := range rs {
			s := sim(q, r)
			ok := truth[q].Group == truth[r].Group
			items = append(items, item{s, ok})
			if ok {
				bestOK = max(bestOK, s)
			} else {
				bestWrong = max(bestWrong, s)
			}
		}
		h := hit[truth[q].Transform]
		h[1]++
		if bestOK > bestWrong {
			h[0]++
		}
		hit[truth[q].Transform] = h
	}
	sort.Slice(items, func(a, b int) bool { return items[a].s > items[b].s })
	var res Result
	tp, fp := 0, 0
	for i := 0; i < len(items); {
		j, btp := i, 0
		for j < len(items) && items[j].s == items[i].s {
			if items[j].ok {
				btp++
			} else {
				fp++
			}
			j++
		}
		tp += btp
		prec := float64(tp) / float64(tp+fp)
		res.MuAP += float64(btp) * prec
		if prec >= 0.95 {
			res.RP95 = max(res.RP95, float64(tp)/float64(len(qs)))
		}
		i = j
	}
	if len(qs) > 0 {
		res.MuAP /= float64(len(qs))
	}
	res.Top1 = map[string]float64{}
	for t, h := range hit {
		res.Top1[t] = float64(h[0]) / float64(h[1])
	}
	return res
}
