package embed

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"gorgonia.org/tensor"
)

// Model is a loaded network. It is safe for concurrent use: every call gets its own
// activation buffers from a pool, so N goroutines calling Embed cost N arenas.
type Model struct {
	name, id, source string
	in               InputSpec
	nodes            []node
	byName           map[string]int
	slotSize         []int // float32 elements per activation buffer
	colSize          int   // im2col buffer (general convolutions)
	pool             sync.Pool
	recipe           Recipe
	// Threads is how many goroutines one forward pass may use (row blocks of each layer).
	// 1 suits throughput work that already runs one image per core; set it before first use.
	Threads int
}

type node struct {
	name    string
	op      string
	inputs  []int // node indices
	slot    int   // output buffer
	h, w, c int   // output shape
	ih, iw  int   // input spatial shape
	ic      int
	kh, kw  int
	sh, sw  int
	pad     [4]int
	act     string
	wt      *tensor.Dense // conv2d: [kh*kw*cin, cout] ; dwconv2d: [kh*kw, c]
	bias    []float32
}

// FeatureMap is one layer's activation for one image, NHWC with N=1.
type FeatureMap struct {
	H, W, C int
	Data    []float32 // (y*W+x)*C + c
}

// LocateModel finds a model file: $IMGFS_MODEL if set, else <name>.imgfsmodel in ./models,
// next to the executable, in models/ next to it or one level up, then in the installed
// locations InstalledModelDirs (docs/embed.md). The error lists every place it looked.
func LocateModel(name string) (string, error) {
	if p := os.Getenv("IMGFS_MODEL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("embed: IMGFS_MODEL=%s: %v", p, err)
		}
		return p, nil
	}
	file := name + ".imgfsmodel"
	cands := []string{filepath.Join("models", file)}
	if wd, err := os.Getwd(); err == nil {
		cands[0] = filepath.Join(wd, "models", file) // the error names it absolutely
	}
	if exe, err := os.Executable(); err == nil {
		d := filepath.Dir(exe)
		cands = append(cands, filepath.Join(d, file), filepath.Join(d, "models", file), filepath.Join(d, "..", "models", file))
	}
	for _, d := range InstalledModelDirs() {
		cands = append(cands, filepath.Join(d, file))
	}
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("embed: %w: %s (looked in %s)", ErrNoModel, file, strings.Join(cands, ", "))
}

// ErrNoModel: no model file in any place LocateModel looks.
var ErrNoModel = errors.New("model file not found")

// InstalledModelDirs are where an installed model lives: $XDG_DATA_HOME/imgfs/models
// (default ~/.local/share/imgfs/models, where scripts/fetch-model.sh installs it), then
// imgfs/models in each of $XDG_DATA_DIRS (default /usr/local/share, /usr/share) for a
// system-wide install. Relative XDG paths are ignored, as the XDG spec says.
func InstalledModelDirs() []string {
	var dirs []string
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		dirs = append(dirs, filepath.Join(d, "imgfs", "models"))
	} else if home, err := os.UserHomeDir(); err == nil && home != "" {
		dirs = append(dirs, filepath.Join(home, ".local", "share", "imgfs", "models"))
	}
	sys := os.Getenv("XDG_DATA_DIRS")
	if sys == "" {
		sys = "/usr/local/share:/usr/share"
	}
	for _, d := range strings.Split(sys, ":") {
		if filepath.IsAbs(d) {
			dirs = append(dirs, filepath.Join(d, "imgfs", "models"))
		}
	}
	return dirs
}

// Load reads and validates a .imgfsmodel file.
func Load(path string) (*Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("embed: %v", err)
	}
	return loadBytes(b)
}

// loadBytes parses and validates a model file held in memory.
func loadBytes(b []byte) (*Model, error) {
	mf, err := ParseModelFile(b)
	if err != nil {
		return nil, err
	}
	m, err := newModel(mf)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	m.id = m.name + "@" + hex.EncodeToString(sum[:6])
	return m, nil
}

// Name is the model's short name (e.g. "mobilenet_v2").
func (m *Model) Name() string { return m.name }

// Source tells where the weights came from.
func (m *Model) Source() string { return m.source }

// Input returns the network's input geometry.
func (m *Model) Input() InputSpec { return m.in }

// NodeNames lists the graph's nodes (layer outputs) in evaluation order, input first.
func (m *Model) NodeNames() []string {
	out := make([]string, len(m.nodes))
	for i, n := range m.nodes {
		out[i] = n.name
	}
	return out
}

func newModel(mf *ModelFile) (*Model, error) {
	h := mf.Header
	in := h.Input
	if in.Height <= 0 || in.Width <= 0 || in.Channels <= 0 || in.Height > 4096 || in.Width > 4096 || in.Channels > 64 {
		return nil, errors.New("embed: model input shape invalid")
	}
	m := &Model{name: h.Name, source: h.Source, in: in, byName: map[string]int{}, Threads: 1}
	m.nodes = append(m.nodes, node{name: in.Name, op: "input", h: in.Height, w: in.Width, c: in.Channels})
	m.byName[in.Name] = 0
	for _, s := range h.Nodes {
		if _, dup := m.byName[s.Name]; dup || s.Name == "" {
			return nil, fmt.Errorf("embed: node name %q empty or duplicated", s.Name)
		}
		n := node{name: s.Name, op: s.Op, act: s.Act, pad: s.Pad}
		for _, i := range s.Inputs {
			idx, ok := m.byName[i]
			if !ok {
				return nil, fmt.Errorf("embed: node %s: unknown input %q", s.Name, i)
			}
			n.inputs = append(n.inputs, idx)
		}
		switch n.act {
		case "", "linear":
			n.act = "linear"
		case "relu", "relu6":
		default:
			return nil, fmt.Errorf("embed: node %s: activation %q unsupported", s.Name, n.act)
		}
		if len(n.inputs) == 0 {
			return nil, fmt.Errorf("embed: node %s has no input", s.Name)
		}
		src := m.nodes[n.inputs[0]]
		n.ih, n.iw, n.ic = src.h, src.w, src.c
		switch s.Op {
		case "conv2d", "dwconv2d":
			if len(n.inputs) != 1 {
				return nil, fmt.Errorf("embed: node %s: one input expected", s.Name)
			}
			wt, ok1 := mf.Tensors[s.Weights]
			b, ok2 := mf.Tensors[s.Bias]
			ws := tensorShape(h.Tensors, s.Weights)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("embed: node %s: weights or bias missing", s.Name)
			}
			for _, p := range s.Pad {
				if p < 0 || p > 16 {
					return nil, fmt.Errorf("embed: node %s: bad padding", s.Name)
				}
			}
			n.sh, n.sw = s.Stride[0], s.Stride[1]
			if n.sh < 1 || n.sw < 1 || n.sh > 16 || n.sw > 16 {
				return nil, fmt.Errorf("embed: node %s: bad stride", s.Name)
			}
			if s.Op == "conv2d" {
				if len(ws) != 4 || ws[2] != n.ic {
					return nil, fmt.Errorf("embed: node %s: kernel shape %v does not fit %d input channels", s.Name, ws, n.ic)
				}
				n.kh, n.kw, n.c = ws[0], ws[1], ws[3]
				n.wt = tensor.New(tensor.WithShape(n.kh*n.kw*n.ic, n.c), tensor.WithBacking(wt))
			} else {
				if len(ws) != 3 || ws[2] != n.ic {
					return nil, fmt.Errorf("embed: node %s: depthwise kernel shape %v does not fit %d channels", s.Name, ws, n.ic)
				}
				n.kh, n.kw, n.c = ws[0], ws[1], ws[2]
				n.wt = tensor.New(tensor.WithShape(n.kh*n.kw, n.c), tensor.WithBacking(wt))
			}
			if len(b) != n.c {
				return nil, fmt.Errorf("embed: node %s: bias has %d values, want %d", s.Name, len(b), n.c)
			}
			n.bias = b
			n.h = (n.ih+n.pad[0]+n.pad[1]-n.kh)/n.sh + 1
			n.w = (n.iw+n.pad[2]+n.pad[3]-n.kw)/n.sw + 1
			if n.h <= 0 || n.w <= 0 || n.kh <= 0 || n.kw <= 0 {
				return nil, fmt.Errorf("embed: node %s: empty output", s.Name)
			}
			if s.Op == "conv2d" && !(n.kh == 1 && n.kw == 1 && n.sh == 1 && n.sw == 1 && n.pad == [4]int{}) {
				m.colSize = max(m.colSize, n.h*n.w*n.kh*n.kw*n.ic)
			}
		case "add":
			if len(n.inputs) != 2 {
				return nil, fmt.Errorf("embed: node %s: add needs two inputs", s.Name)
			}
			o := m.nodes[n.inputs[1]]
			if o.h != src.h || o.w != src.w || o.c != src.c {
				return nil, fmt.Errorf("embed: node %s: add of different shapes", s.Name)
			}
			n.h, n.w, n.c = src.h, src.w, src.c
		case "act":
			if len(n.inputs) != 1 {
				return nil, fmt.Errorf("embed: node %s: one input expected", s.Name)
			}
			n.h, n.w, n.c = src.h, src.w, src.c
		default:
			return nil, fmt.Errorf("embed: node %s: op %q unsupported", s.Name, s.Op)
		}
		if n.h*n.w*n.c > 1<<26 {
			return nil, fmt.Errorf("embed: node %s: activation too large", s.Name)
		}
		m.byName[s.Name] = len(m.nodes)
		m.nodes = append(m.nodes, n)
	}
	m.planSlots()
	// A model without the default recipe's layers (a test model) needs SetRecipe before Embed.
	_ = m.SetRecipe(DefaultRecipe)
	return m, nil
}

func tensorShape(ts []TensorSpec, name string) []int {
	for _, t := range ts {
		if t.Name == name {
			return t.Shape
		}
	}
	return nil
}

// planSlots assigns activation buffers: a node's buffer is reused once its last consumer ran.
func (m *Model) planSlots() {
	last := make([]int, len(m.nodes))
	for i := range m.nodes {
		last[i] = i
		for _, in := range m.nodes[i].inputs {
			last[in] = i
		}
	}
	var free []int
	for i := range m.nodes {
		n := &m.nodes[i]
		size := n.h * n.w * n.c
		// Pick a free slot (largest first fit), else a new one.
		best := -1
		for j, s := range free {
			if best < 0 || m.slotSize[s] > m.slotSize[free[best]] {
				best = j
			}
		}
		if best >= 0 {
			n.slot = free[best]
			free = append(free[:best], free[best+1:]...)
			m.slotSize[n.slot] = max(m.slotSize[n.slot], size)
		} else {
			n.slot = len(m.slotSize)
			m.slotSize = append(m.slotSize, size)
		}
		// Release inputs whose last use is this node (after allocating: no in-place writes).
		for _, in := range n.inputs {
			if last[in] == i {
				free = append(free, m.nodes[in].slot)
			}
		}
	}
}

type arena struct {
	slots [][]float32
	col   []float32
}

func (m *Model) getArena() *arena {
	if a, ok := m.pool.Get().(*arena); ok {
		return a
	}
	a := &arena{slots: make([][]float32, len(m.slotSize)), col: make([]float32, m.colSize)}
	for i, s := range m.slotSize {
		a.slots[i] = make([]float32, s)
	}
	return a
}

// ArenaBytes is the activation memory one concurrent forward pass holds.
func (m *Model) ArenaBytes() int {
	n := m.colSize
	for _, s := range m.slotSize {
		n += s
	}
	return 4 * n
}

// Forward runs the network on x (NHWC, Input() shape, already preprocessed) and returns copies
// of the named layers' outputs, in the order asked.
func (m *Model) Forward(x []float32, layers ...string) ([]FeatureMap, error) {
	if len(x) != m.in.Height*m.in.Width*m.in.Channels {
		return nil, fmt.Errorf("embed: input has %d values, want %dx%dx%d", len(x), m.in.Height, m.in.Width, m.in.Channels)
	}
	want := make(map[int][]int, len(layers))
	lastNeeded := 0
	for i, l := range layers {
		idx, ok := m.byName[l]
		if !ok {
			return nil, fmt.Errorf("embed: model %s has no layer %q", m.name, l)
		}
		want[idx] = append(want[idx], i)
		lastNeeded = max(lastNeeded, idx)
	}
	out := make([]FeatureMap, len(layers))
	a := m.getArena()
	defer m.pool.Put(a)
	threads := m.Threads
	if threads < 1 {
		threads = 1
	}
	threads = min(threads, runtime.GOMAXPROCS(0))
	for i := 0; i <= lastNeeded; i++ {
		n := &m.nodes[i]
		dst := a.slots[n.slot][:n.h*n.w*n.c]
		switch n.op {
		case "input":
			copy(dst, x)
		case "conv2d":
			src := a.slots[m.nodes[n.inputs[0]].slot][:n.ih*n.iw*n.ic]
			if err := conv2d(n, src, dst, a.col, threads); err != nil {
				return nil, err
			}
		case "dwconv2d":
			src := a.slots[m.nodes[n.inputs[0]].slot][:n.ih*n.iw*n.ic]
			dwconv2d(n, src, dst, threads)
		case "add":
			p := a.slots[m.nodes[n.inputs[0]].slot][:len(dst)]
			q := a.slots[m.nodes[n.inputs[1]].slot][:len(dst)]
			addAct(dst, p, q, n.act)
		case "act":
			src := a.slots[m.nodes[n.inputs[0]].slot][:len(dst)]
			copy(dst, src)
			biasAct(dst, nil, n.act)
		}
		for _, j := range want[i] {
			out[j] = FeatureMap{H: n.h, W: n.w, C: n.c, Data: append([]float32(nil), dst...)}
		}
	}
	return out, nil
}
