package tfjs

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/imgfs/imgfs/embed"
)

// Layer is one Keras layer of a tfjs layers model.
type Layer struct {
	Name         string          `json:"name"`
	ClassName    string          `json:"class_name"`
	Config       json.RawMessage `json:"config"`
	InboundNodes [][][]any       `json:"inbound_nodes"`
}

// Weight is one entry of the weights manifest.
type Weight struct {
	Name         string `json:"name"`
	Shape        []int  `json:"shape"`
	Dtype        string `json:"dtype"`
	Quantization *struct {
		Min   float64 `json:"min"`
		Scale float64 `json:"scale"`
		Dtype string  `json:"dtype"`
	} `json:"quantization"`
}

// LayersModel is the part of a tfjs model.json that the converter uses.
type LayersModel struct {
	ModelTopology struct {
		ModelConfig struct {
			ClassName string `json:"class_name"`
			Config    struct {
				Name   string  `json:"name"`
				Layers []Layer `json:"layers"`
			} `json:"config"`
		} `json:"model_config"`
	} `json:"modelTopology"`
	WeightsManifest []struct {
		Paths   []string `json:"paths"`
		Weights []Weight `json:"weights"`
	} `json:"weightsManifest"`
}

// Tensor is a dequantised weight.
type Tensor struct {
	Shape []int
	Data  []float32
}

// ParseModelModule parses a bundled model.min.js (or plain model.json when it starts with '{').
func ParseModelModule(src []byte) (*LayersModel, error) {
	var v any
	var err error
	if s := strings.TrimSpace(string(src)); strings.HasPrefix(s, "{") {
		v, err = ParseLiteral(s)
	} else {
		v, err = ModuleExport(src)
	}
	if err != nil {
		return nil, err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m LayersModel
	if err := json.Unmarshal(j, &m); err != nil {
		return nil, fmt.Errorf("tfjs: model JSON: %v", err)
	}
	if len(m.ModelTopology.ModelConfig.Config.Layers) == 0 {
		return nil, errors.New("tfjs: model has no layers (a graph model? only layers models are supported)")
	}
	return &m, nil
}

// ParseShardModule returns the raw bytes of a bundled weight shard (a base64 string export).
func ParseShardModule(src []byte) ([]byte, error) {
	v, err := ModuleExport(src)
	if err != nil {
		return nil, err
	}
	s, ok := v.(string)
	if !ok {
		return nil, errors.New("tfjs: weight shard module does not export a string")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("tfjs: weight shard base64: %v", err)
	}
	return b, nil
}

// Dequantize unpacks the weights of all manifest groups from the concatenated shard bytes,
// the way tfjs does: value = q*scale + min for uint8/uint16 quantisation, else raw float32.
func (m *LayersModel) Dequantize(shards []byte) (map[string]Tensor, error) {
	out := map[string]Tensor{}
	off := 0
	for _, g := range m.WeightsManifest {
		for _, w := range g.Weights {
			n := 1
			for _, d := range w.Shape {
				if d <= 0 || d > 1<<26 {
					return nil, fmt.Errorf("tfjs: weight %q: bad shape %v", w.Name, w.Shape)
				}
				n *= d
				if n > 1<<26 {
					return nil, fmt.Errorf("tfjs: weight %q too large", w.Name)
				}
			}
			data := make([]float32, n)
			switch {
			case w.Quantization != nil && w.Quantization.Dtype == "uint8":
				if off+n > len(shards) {
					return nil, fmt.Errorf("tfjs: weight %q past the end of the shards", w.Name)
				}
				for i := range data {
					data[i] = float32(float64(shards[off+i])*w.Quantization.Scale + w.Quantization.Min)
				}
				off += n
			case w.Quantization != nil && w.Quantization.Dtype == "uint16":
				if off+2*n > len(shards) {
					return nil, fmt.Errorf("tfjs: weight %q past the end of the shards", w.Name)
				}
				for i := range data {
					q := uint16(shards[off+2*i]) | uint16(shards[off+2*i+1])<<8
					data[i] = float32(float64(q)*w.Quantization.Scale + w.Quantization.Min)
				}
				off += 2 * n
			case w.Quantization == nil && (w.Dtype == "float32" || w.Dtype == ""):
				if off+4*n > len(shards) {
					return nil, fmt.Errorf("tfjs: weight %q past the end of the shards", w.Name)
				}
				for i := range data {
					b := shards[off+4*i:]
					data[i] = math.Float32frombits(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
				}
				off += 4 * n
			default:
				return nil, fmt.Errorf("tfjs: weight %q: unsupported dtype/quantisation", w.Name)
			}
			if _, dup := out[w.Name]; dup {
				return nil, fmt.Errorf("tfjs: weight %q listed twice", w.Name)
			}
			out[w.Name] = Tensor{Shape: w.Shape, Data: data}
		}
	}
	if off != len(shards) {
		return nil, fmt.Errorf("tfjs: shards hold %d bytes, manifest describes %d", len(shards), off)
	}
	return out, nil
}

type layerConfig struct {
	BatchInputShape []any    `json:"batch_input_shape"`
	Padding         any      `json:"padding"`
	KernelSize      []int    `json:"kernel_size"`
	Strides         []int    `json:"strides"`
	DilationRate    []int    `json:"dilation_rate"`
	Activation      string   `json:"activation"`
	UseBias         bool     `json:"use_bias"`
	DepthMultiplier int      `json:"depth_multiplier"`
	Epsilon         float64  `json:"epsilon"`
	Center          *bool    `json:"center"`
	Scale           *bool    `json:"scale"`
	Axis            any      `json:"axis"`
	MaxValue        *float64 `json:"max_value"`
	NegativeSlope   float64  `json:"negative_slope"`
	Threshold       float64  `json:"threshold"`
	DataFormat      string   `json:"data_format"`
}

// node under construction
type cnode struct {
	spec    embed.NodeSpec
	w, b    []float32
	wshape  []int
	outC    int
	pending [4]int // zero padding not yet applied (ZeroPadding2D in front of a conv)
}

// Convert turns the layers model into an imgfs graph that computes the layer named output
// (and everything it depends on). Batch normalisation is folded into the preceding
// convolution, ReLU/ReLU6 fused into it, ZeroPadding2D merged into the next convolution.
func Convert(m *LayersModel, weights map[string]Tensor, output string) (embed.FileHeader, map[string][]float32, error) {
	var h embed.FileHeader
	layers := m.ModelTopology.ModelConfig.Config.Layers
	byName := map[string]*Layer{}
	consumers := map[string]int{}
	for i := range layers {
		l := &layers[i]
		byName[l.Name] = l
		for _, in := range inputsOf(l) {
			consumers[in]++
		}
	}
	if _, ok := byName[output]; !ok {
		return h, nil, fmt.Errorf("tfjs: no layer named %q", output)
	}
	// Layers needed for output.
	need := map[string]bool{}
	var mark func(string)
	mark = func(n string) {
		if need[n] {
			return
		}
		need[n] = true
		if l := byName[n]; l != nil {
			for _, in := range inputsOf(l) {
				mark(in)
			}
		}
	}
	mark(output)

	alias := map[string]*cnode{} // keras layer name -> node producing its value
	var nodes []*cnode
	channels := map[*cnode]int{}
	tensors := map[string][]float32{}
	var tspecs []embed.TensorSpec
	addTensor := func(name string, shape []int, v []float32) {
		tensors[name] = v
		tspecs = append(tspecs, embed.TensorSpec{Name: name, Shape: shape})
	}
	for i := range layers {
		l := &layers[i]
		if !need[l.Name] {
			continue
		}
		var cfg layerConfig
		if err := json.Unmarshal(l.Config, &cfg); err != nil {
			return h, nil, fmt.Errorf("tfjs: layer %s config: %v", l.Name, err)
		}
		if cfg.DataFormat != "" && cfg.DataFormat != "channels_last" {
			return h, nil, fmt.Errorf("tfjs: layer %s: data_format %s unsupported", l.Name, cfg.DataFormat)
		}
		ins := inputsOf(l)
		var src []*cnode
		for _, in := range ins {
			n, ok := alias[in]
			if !ok {
				return h, nil, fmt.Errorf("tfjs: layer %s: input %s not available", l.Name, in)
			}
			src = append(src, n)
		}
		// fusable reports whether the single input node can absorb this layer.
		fusable := func() bool {
			return len(src) == 1 && consumers[ins[0]] == 1 && src[0].spec.Name == ins[0] &&
				(src[0].spec.Op == "conv2d" || src[0].spec.Op == "dwconv2d")
		}
		switch l.ClassName {
		case "InputLayer":
			s := cfg.BatchInputShape
			if len(s) != 4 {
				return h, nil, fmt.Errorf("tfjs: input %s: want NHWC shape, got %v", l.Name, s)
			}
			dims := [3]int{}
			for k := 0; k < 3; k++ {
				f, ok := s[k+1].(float64)
				if !ok || f <= 0 {
					return h, nil, fmt.Errorf("tfjs: input %s: fixed height/width/channels needed", l.Name)
				}
				dims[k] = int(f)
			}
			h.Input = embed.InputSpec{Name: l.Name, Height: dims[0], Width: dims[1], Channels: dims[2]}
			n := &cnode{spec: embed.NodeSpec{Name: l.Name, Op: "input"}}
			channels[n] = dims[2]
			alias[l.Name] = n
		case "ZeroPadding2D":
			p, err := zeroPadding(cfg.Padding)
			if err != nil {
				return h, nil, fmt.Errorf("tfjs: layer %s: %v", l.Name, err)
			}
			// A virtual node: the padding is applied by the consuming convolution.
			n := &cnode{spec: embed.NodeSpec{Name: src[0].spec.Name, Op: "pad"}, pending: p}
			n.spec.Inputs = []string{src[0].spec.Name}
			n.spec.Fused = []string{l.Name}
			channels[n] = channels[src[0]]
			if src[0].spec.Op == "pad" {
				return h, nil, fmt.Errorf("tfjs: layer %s: stacked padding unsupported", l.Name)
			}
			alias[l.Name] = n
		case "Conv2D", "DepthwiseConv2D":
			if len(cfg.KernelSize) != 2 || len(cfg.Strides) != 2 {
				return h, nil, fmt.Errorf("tfjs: layer %s: bad kernel/strides", l.Name)
			}
			for _, d := range cfg.DilationRate {
				if d != 1 {
					return h, nil, fmt.Errorf("tfjs: layer %s: dilation unsupported", l.Name)
				}
			}
			in := src[0]
			var pad [4]int
			fused := []string{}
			if in.spec.Op == "pad" {
				pad = in.pending
				fused = append(fused, in.spec.Fused...)
				in = alias[in.spec.Inputs[0]]
			}
			padding, _ := cfg.Padding.(string)
			cin := channels[in]
			n := &cnode{spec: embed.NodeSpec{Name: l.Name, Inputs: []string{in.spec.Name}, Stride: [2]int{cfg.Strides[0], cfg.Strides[1]}, Act: "linear"}}
			n.spec.Fused = append(fused, l.Name)
			if padding == "same" {
				if pad != [4]int{} {
					return h, nil, fmt.Errorf("tfjs: layer %s: same padding after ZeroPadding2D unsupported", l.Name)
				}
				pad = samePad(h.Input, nodesOutHW(nodes, in, h.Input), cfg.KernelSize, cfg.Strides)
			} else if padding != "valid" {
				return h, nil, fmt.Errorf("tfjs: layer %s: padding %v unsupported", l.Name, cfg.Padding)
			}
			n.spec.Pad = pad
			if l.ClassName == "Conv2D" {
				k, ok := weights[l.Name+"/kernel"]
				if !ok || len(k.Shape) != 4 || k.Shape[2] != cin {
					return h, nil, fmt.Errorf("tfjs: layer %s: kernel missing or not [kh,kw,%d,cout]", l.Name, cin)
				}
				n.spec.Op = "conv2d"
				n.w = append([]float32(nil), k.Data...)
				n.wshape = k.Shape
				n.outC = k.Shape[3]
			} else {
				k, ok := weights[l.Name+"/depthwise_kernel"]
				if !ok || len(k.Shape) != 4 || k.Shape[2] != cin || k.Shape[3] != 1 || (cfg.DepthMultiplier != 1 && cfg.DepthMultiplier != 0) {
					return h, nil, fmt.Errorf("tfjs: layer %s: depthwise kernel missing or multiplier != 1", l.Name)
				}
				n.spec.Op = "dwconv2d"
				n.w = append([]float32(nil), k.Data...)
				n.wshape = k.Shape[:3]
				n.outC = cin
			}
			n.b = make([]float32, n.outC)
			if cfg.UseBias {
				b, ok := weights[l.Name+"/bias"]
				if !ok || len(b.Data) != n.outC {
					return h, nil, fmt.Errorf("tfjs: layer %s: bias missing", l.Name)
				}
				copy(n.b, b.Data)
			}
			if err := applyAct(n, cfg.Activation); err != nil {
				return h, nil, fmt.Errorf("tfjs: layer %s: %v", l.Name, err)
			}
			channels[n] = n.outC
			nodes = append(nodes, n)
			alias[l.Name] = n
		case "BatchNormalization":
			if !fusable() || src[0].spec.Act != "linear" {
				return h, nil, fmt.Errorf("tfjs: layer %s: batch norm not directly after a convolution", l.Name)
			}
			n := src[0]
			c := n.outC
			get := func(s string, def float64) ([]float64, error) {
				out := make([]float64, c)
				t, ok := weights[l.Name+"/"+s]
				if !ok {
					for i := range out {
						out[i] = def
					}
					return out, nil
				}
				if len(t.Data) != c {
					return nil, fmt.Errorf("%s has %d values, want %d", s, len(t.Data), c)
				}
				for i, v := range t.Data {
					out[i] = float64(v)
				}
				return out, nil
			}
			gamma, err1 := get("gamma", 1)
			beta, err2 := get("beta", 0)
			mean, err3 := get("moving_mean", 0)
			variance, err4 := get("moving_variance", 1)
			if err := errors.Join(err1, err2, err3, err4); err != nil {
				return h, nil, fmt.Errorf("tfjs: layer %s: %v", l.Name, err)
			}
			eps := cfg.Epsilon
			if eps == 0 {
				eps = 1e-3
			}
			// y = gamma*(conv(x)+b-mean)/sqrt(var+eps) + beta: scale the kernel per output channel.
			for o := 0; o < c; o++ {
				f := gamma[o] / math.Sqrt(variance[o]+eps)
				for i := o; i < len(n.w); i += c {
					n.w[i] = float32(float64(n.w[i]) * f)
				}
				n.b[o] = float32((float64(n.b[o])-mean[o])*f + beta[o])
			}
			rename(alias, n, l.Name)
		case "ReLU", "Activation":
			act := cfg.Activation
			if l.ClassName == "ReLU" {
				if cfg.NegativeSlope != 0 || cfg.Threshold != 0 {
					return h, nil, fmt.Errorf("tfjs: layer %s: leaky/thresholded ReLU unsupported", l.Name)
				}
				act = "relu"
				if cfg.MaxValue != nil {
					if *cfg.MaxValue != 6 {
						return h, nil, fmt.Errorf("tfjs: layer %s: ReLU max %v unsupported", l.Name, *cfg.MaxValue)
					}
					act = "relu6"
				}
			}
			if fusable() && src[0].spec.Act == "linear" {
				if err := applyAct(src[0], act); err != nil {
					return h, nil, fmt.Errorf("tfjs: layer %s: %v", l.Name, err)
				}
				rename(alias, src[0], l.Name)
				continue
			}
			n := &cnode{spec: embed.NodeSpec{Name: l.Name, Op: "act", Inputs: []string{src[0].spec.Name}, Act: act}}
			if err := applyAct(n, act); err != nil {
				return h, nil, fmt.Errorf("tfjs: layer %s: %v", l.Name, err)
			}
			channels[n] = channels[src[0]]
			nodes = append(nodes, n)
			alias[l.Name] = n
		case "Add":
			if len(src) != 2 || channels[src[0]] != channels[src[1]] {
				return h, nil, fmt.Errorf("tfjs: layer %s: Add needs two inputs of equal channels", l.Name)
			}
			n := &cnode{spec: embed.NodeSpec{Name: l.Name, Op: "add", Inputs: []string{src[0].spec.Name, src[1].spec.Name}, Act: "linear"}}
			channels[n] = channels[src[0]]
			nodes = append(nodes, n)
			alias[l.Name] = n
		default:
			return h, nil, fmt.Errorf("tfjs: layer %s: class %s unsupported (choose an earlier output layer)", l.Name, l.ClassName)
		}
	}
	if out := alias[output]; out == nil || out.spec.Name != output {
		return h, nil, fmt.Errorf("tfjs: output %s is not a node of its own after fusion", output)
	}
	for _, n := range nodes {
		if n.spec.Op == "conv2d" || n.spec.Op == "dwconv2d" {
			n.spec.Weights = n.spec.Name + "/w"
			n.spec.Bias = n.spec.Name + "/b"
			addTensor(n.spec.Weights, n.wshape, n.w)
			addTensor(n.spec.Bias, []int{n.outC}, n.b)
		}
		h.Nodes = append(h.Nodes, n.spec)
	}
	h.Tensors = tspecs
	return h, tensors, nil
}

func applyAct(n *cnode, act string) error {
	switch act {
	case "", "linear":
		n.spec.Act = "linear"
	case "relu", "relu6":
		n.spec.Act = act
	default:
		return fmt.Errorf("activation %q unsupported", act)
	}
	return nil
}

// rename makes node n answer to the name of the layer that was fused into it, so that the
// graph's node names are the Keras names of the values they produce.
func rename(alias map[string]*cnode, n *cnode, name string) {
	n.spec.Fused = append(n.spec.Fused, name)
	n.spec.Name = name
	alias[name] = n
}

func inputsOf(l *Layer) []string {
	var ins []string
	for _, node := range l.InboundNodes {
		for _, in := range node {
			if len(in) > 0 {
				if s, ok := in[0].(string); ok {
					ins = append(ins, s)
				}
			}
		}
	}
	return ins
}

func zeroPadding(p any) ([4]int, error) {
	var out [4]int
	toInt := func(v any) (int, bool) {
		f, ok := v.(float64)
		return int(f), ok && f >= 0 && f < 1e4
	}
	switch v := p.(type) {
	case float64:
		k, _ := toInt(v)
		return [4]int{k, k, k, k}, nil
	case []any:
		if len(v) != 2 {
			return out, errors.New("bad padding")
		}
		for i, e := range v {
			switch e := e.(type) {
			case float64:
				k, ok := toInt(e)
				if !ok {
					return out, errors.New("bad padding")
				}
				out[2*i], out[2*i+1] = k, k
			case []any:
				if len(e) != 2 {
					return out, errors.New("bad padding")
				}
				a, ok1 := toInt(e[0])
				b, ok2 := toInt(e[1])
				if !ok1 || !ok2 {
					return out, errors.New("bad padding")
				}
				out[2*i], out[2*i+1] = a, b
			default:
				return out, errors.New("bad padding")
			}
		}
		return out, nil
	}
	return out, errors.New("bad padding")
}

// nodesOutHW computes the spatial size of node n's output by walking the graph from the input.
func nodesOutHW(nodes []*cnode, n *cnode, in embed.InputSpec) [2]int {
	if n.spec.Op == "input" {
		return [2]int{in.Height, in.Width}
	}
	var prev *cnode
	for _, m := range nodes {
		if m.spec.Name == n.spec.Inputs[0] {
			prev = m
		}
	}
	var hw [2]int
	if prev == nil {
		hw = [2]int{in.Height, in.Width}
	} else {
		hw = nodesOutHW(nodes, prev, in)
	}
	if n.spec.Op == "conv2d" || n.spec.Op == "dwconv2d" {
		kh, kw := n.wshape[0], n.wshape[1]
		p := n.spec.Pad
		hw[0] = (hw[0]+p[0]+p[1]-kh)/n.spec.Stride[0] + 1
		hw[1] = (hw[1]+p[2]+p[3]-kw)/n.spec.Stride[1] + 1
	}
	return hw
}

// samePad is TensorFlow's SAME padding: the extra row/column goes to the bottom/right.
func samePad(_ embed.InputSpec, hw [2]int, k, s []int) [4]int {
	var p [4]int
	for d := 0; d < 2; d++ {
		out := (hw[d] + s[d] - 1) / s[d]
		total := (out-1)*s[d] + k[d] - hw[d]
		if total < 0 {
			total = 0
		}
		p[2*d] = total / 2
		p[2*d+1] = total - total/2
	}
	return p
}
