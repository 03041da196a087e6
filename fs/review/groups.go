package review

import (
	"sort"
	"strings"

	"github.com/imgfs/imgfs/fs/similar"
)

// Group is a set of photos joined by near-duplicate pairs (connected components of the
// pair graph at the mount's threshold; docs/review.md).
type Group struct {
	// Score is the group's best pair score; Tier is that pair's tier.
	Score   float32  `json:"score"`
	Tier    string   `json:"tier"`
	Members []Member `json:"members"`
}

// Member is one photo of a group. Score and Tier are its best pair within the group.
type Member struct {
	Path  string  `json:"path"`
	Score float32 `json:"score"`
	Tier  string  `json:"tier"`
	Info
}

// tierRank orders the tiers of fs/similar.Tier, best first (a tier it does not know last).
func tierRank(t string) int {
	switch t {
	case "identical":
		return 0
	case "same":
		return 1
	case "similar":
		return 2
	}
	return 3
}

// Tiers lists the tiers of gs, best first (the page's tier filter).
func Tiers(gs []Group) []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range gs {
		if !seen[g.Tier] {
			seen[g.Tier] = true
			out = append(out, g.Tier)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := tierRank(out[i]), tierRank(out[j]); a != b {
			return a < b
		}
		return out[i] < out[j]
	})
	return out
}

// Groups joins pairs into groups, best-scoring first (then larger groups, then by first path).
// Members are sorted by path; the page orders them by pixel count once their info is known.
func Groups(pairs []similar.PairOut) []Group {
	parent := map[string]string{}
	var find func(string) string
	find = func(p string) string {
		q, ok := parent[p]
		if !ok {
			parent[p] = p
			return p
		}
		if q == p {
			return p
		}
		r := find(q)
		parent[p] = r
		return r
	}
	for _, p := range pairs {
		a, b := find(p.A), find(p.B)
		if a != b {
			if b < a {
				a, b = b, a
			}
			parent[b] = a
		}
	}
	type acc struct {
		g     Group
		index map[string]int
	}
	byRoot := map[string]*acc{}
	add := func(root, path string, score float32, tier string) {
		a := byRoot[root]
		if a == nil {
			a = &acc{index: map[string]int{}}
			byRoot[root] = a
		}
		i, ok := a.index[path]
		if !ok {
			i = len(a.g.Members)
			a.index[path] = i
			a.g.Members = append(a.g.Members, Member{Path: path, Tier: tier, Score: score})
		}
		m := &a.g.Members[i]
		if score > m.Score || score == m.Score && tierRank(tier) < tierRank(m.Tier) {
			m.Score, m.Tier = score, tier
		}
		if score > a.g.Score || score == a.g.Score && tierRank(tier) < tierRank(a.g.Tier) || a.g.Tier == "" {
			a.g.Score, a.g.Tier = score, tier
		}
	}
	for _, p := range pairs {
		r := find(p.A)
		add(r, p.A, p.Score, p.Tier)
		add(r, p.B, p.Score, p.Tier)
	}
	out := make([]Group, 0, len(byRoot))
	for _, a := range byRoot {
		sort.Slice(a.g.Members, func(i, j int) bool { return a.g.Members[i].Path < a.g.Members[j].Path })
		out = append(out, a.g)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		if len(a.Members) != len(b.Members) {
			return len(a.Members) > len(b.Members)
		}
		return a.Members[0].Path < b.Members[0].Path
	})
	return out
}

// Filter keeps the groups of tier (empty: any) with a member in folder (a slash path from
// the mount root; empty: any).
func Filter(gs []Group, tier, folder string) []Group {
	folder = strings.Trim(folder, "/")
	if tier == "" && folder == "" {
		return gs
	}
	var out []Group
	for _, g := range gs {
		if tier != "" && g.Tier != tier {
			continue
		}
		if folder != "" && !hasMemberIn(g, folder) {
			continue
		}
		out = append(out, g)
	}
	return out
}

func hasMemberIn(g Group, folder string) bool {
	for _, m := range g.Members {
		if strings.HasPrefix(m.Path, folder+"/") {
			return true
		}
	}
	return false
}

// Folders lists the folders holding group members (and their ancestors), sorted.
func Folders(gs []Group) []string {
	set := map[string]bool{}
	for _, g := range gs {
		for _, m := range g.Members {
			for d := parentDir(m.Path); d != ""; d = parentDir(d) {
				if set[d] {
					break
				}
				set[d] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}
