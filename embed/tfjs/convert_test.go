package tfjs

import (
	"bytes"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfs/imgfs/embed"
)

// A small Keras-style functional model exercising every converted layer type, written the
// way the tfjs bundles write it (bare keys, !0/!1), with uint8-quantised weights.
const tinyTopology = `{modelTopology:{keras_version:"2.2.4",model_config:{class_name:"Model",config:{name:"tiny",layers:[
{name:"in",class_name:"InputLayer",config:{batch_input_shape:[null,9,7,3],dtype:"float32",sparse:!1,name:"in"},inbound_nodes:[]},
{name:"pad",class_name:"ZeroPadding2D",config:{padding:[[0,1],[1,1]],data_format:"channels_last"},inbound_nodes:[[["in",0,0,{}]]]},
{name:"c1",class_name:"Conv2D",config:{filters:4,kernel_size:[3,3],strides:[2,2],padding:"valid",dilation_rate:[1,1],activation:"linear",use_bias:!1},inbound_nodes:[[["pad",0,0,{}]]]},
{name:"c1_bn",class_name:"BatchNormalization",config:{axis:-1,epsilon:.001,center:!0,scale:!0},inbound_nodes:[[["c1",0,0,{}]]]},
{name:"c1_relu",class_name:"ReLU",config:{max_value:6,negative_slope:0,threshold:0},inbound_nodes:[[["c1_bn",0,0,{}]]]},
{name:"dw",class_name:"DepthwiseConv2D",config:{kernel_size:[3,3],strides:[1,1],padding:"same",dilation_rate:[1,1],activation:"linear",use_bias:!1,depth_multiplier:1},inbound_nodes:[[["c1_relu",0,0,{}]]]},
{name:"dw_bn",class_name:"BatchNormalization",config:{axis:-1,epsilon:.001,center:!0,scale:!0},inbound_nodes:[[["dw",0,0,{}]]]},
{name:"dw_relu",class_name:"ReLU",config:{max_value:6,negative_slope:0,threshold:0},inbound_nodes:[[["dw_bn",0,0,{}]]]},
{name:"pw",class_name:"Conv2D",config:{filters:4,kernel_size:[1,1],strides:[1,1],padding:"valid",dilation_rate:[1,1],activation:"linear",use_bias:!0},inbound_nodes:[[["dw_relu",0,0,{}]]]},
{name:"pw_bn",class_name:"BatchNormalization",config:{axis:-1,epsilon:.001,center:!0,scale:!0},inbound_nodes:[[["pw",0,0,{}]]]},
{name:"add",class_name:"Add",config:{},inbound_nodes:[[["c1_relu",0,0,{}],["pw_bn",0,0,{}]]]},
{name:"dw2",class_name:"DepthwiseConv2D",config:{kernel_size:[3,3],strides:[2,2],padding:"same",dilation_rate:[1,1],activation:"relu",use_bias:!0,depth_multiplier:1},inbound_nodes:[[["add",0,0,{}]]]},
{name:"flat",class_name:"Flatten",config:{},inbound_nodes:[[["dw2",0,0,{}]]]}
]}}},weightsManifest:[{paths:["group1-shard1of1"],weights:[%s]}]}`

type tinyWeight struct {
	name  string
	shape []int
	pos   bool // strictly positive (variances, gammas)
}

var tinyWeights = []tinyWeight{
	{"c1/kernel", []int{3, 3, 3, 4}, false},
	{"c1_bn/gamma", []int{4}, true}, {"c1_bn/beta", []int{4}, false}, {"c1_bn/moving_mean", []int{4}, false}, {"c1_bn/moving_variance", []int{4}, true},
	{"dw/depthwise_kernel", []int{3, 3, 4, 1}, false},
	{"dw_bn/gamma", []int{4}, true}, {"dw_bn/beta", []int{4}, false}, {"dw_bn/moving_mean", []int{4}, false}, {"dw_bn/moving_variance", []int{4}, true},
	{"pw/kernel", []int{1, 1, 4, 4}, false}, {"pw/bias", []int{4}, false},
	{"pw_bn/gamma", []int{4}, true}, {"pw_bn/beta", []int{4}, false}, {"pw_bn/moving_mean", []int{4}, false}, {"pw_bn/moving_variance", []int{4}, true},
	{"dw2/depthwise_kernel", []int{3, 3, 4, 1}, false}, {"dw2/bias", []int{4}, false},
}

// tinyModel returns the bundled model source, its shard bytes, and the dequantised weights.
func tinyModel(r *rand.Rand) (string, []byte, map[string][]float64) {
	var manifest []string
	var shard []byte
	w := map[string][]float64{}
	for _, tw := range tinyWeights {
		n := 1
		for _, d := range tw.shape {
			n *= d
		}
		min, scale := -1.0+r.Float64()*0.2, 0.01
		if tw.pos {
			min = 0.5
		}
		vals := make([]float64, n)
		for i := range vals {
			q := byte(r.Intn(256))
			shard = append(shard, q)
			vals[i] = float64(float32(float64(q)*scale + min))
		}
		w[tw.name] = vals
		shape := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(tw.shape)), ","), "[]")
		manifest = append(manifest, fmt.Sprintf(`{name:"%s",shape:[%s],dtype:"float32",quantization:{min:%v,scale:%v,dtype:"uint8"}}`, tw.name, shape, min, scale))
	}
	return "m.exports=" + fmt.Sprintf(tinyTopology, strings.Join(manifest, ",")), shard, w
}

// Straightforward float64 reference of the tiny model, layer by layer, BN unfused.
type fmap struct {
	h, w, c int
	d       []float64
}

func (f fmap) at(y, x, c int) float64 {
	if y < 0 || x < 0 || y >= f.h || x >= f.w {
		return 0
	}
	return f.d[(y*f.w+x)*f.c+c]
}

func refConv(in fmap, k []float64, kh, kw, cout, s int, pad [4]int, depthwise bool) fmap {
	oh := (in.h+pad[0]+pad[1]-kh)/s + 1
	ow := (in.w+pad[2]+pad[3]-kw)/s + 1
	if depthwise {
		cout = in.c
	}
	out := fmap{oh, ow, cout, make([]float64, oh*ow*cout)}
	for y := 0; y < oh; y++ {
		for x := 0; x < ow; x++ {
			for o := 0; o < cout; o++ {
				var acc float64
				for ky := 0; ky < kh; ky++ {
					for kx := 0; kx < kw; kx++ {
						iy, ix := y*s+ky-pad[0], x*s+kx-pad[2]
						if depthwise {
							acc += in.at(iy, ix, o) * k[(ky*kw+kx)*in.c+o]
							continue
						}
						for c := 0; c < in.c; c++ {
							acc += in.at(iy, ix, c) * k[((ky*kw+kx)*in.c+c)*cout+o]
						}
					}
				}
				out.d[(y*ow+x)*cout+o] = acc
			}
		}
	}
	return out
}

func refBN(f fmap, w map[string][]float64, name string) fmap {
	for i := range f.d {
		c := i % f.c
		f.d[i] = w[name+"/gamma"][c]*(f.d[i]-w[name+"/moving_mean"][c])/math.Sqrt(w[name+"/moving_variance"][c]+0.001) + w[name+"/beta"][c]
	}
	return f
}

func refAct(f fmap, hi float64) fmap {
	for i, v := range f.d {
		f.d[i] = math.Min(math.Max(v, 0), hi)
	}
	return f
}

func refBias(f fmap, b []float64) fmap {
	for i := range f.d {
		f.d[i] += b[i%f.c]
	}
	return f
}

func TestConvertTinyModel(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	src, shard, w := tinyModel(r)
	m, err := ParseModelModule([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	deq, err := m.Dequantize(shard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Dequantize(shard[:len(shard)-1]); err == nil {
		t.Fatal("short shard accepted")
	}
	h, tensors, err := Convert(m, deq, "dw2")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Convert(m, deq, "flat"); err == nil {
		t.Fatal("Flatten output accepted")
	}
	// BN folded, ReLU fused, padding merged: conv, dw, pw, add, dw2.
	if got := len(h.Nodes); got != 5 {
		t.Fatalf("%d nodes after fusion, want 5: %+v", got, h.Nodes)
	}
	h.Name = "tiny"
	var buf bytes.Buffer
	if err := embed.WriteModelFile(&buf, h, tensors); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tiny.imgfsmodel")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	model, err := embed.Load(path)
	if err != nil {
		t.Fatal(err)
	}

	for trial := 0; trial < 3; trial++ {
		in := fmap{9, 7, 3, make([]float64, 9*7*3)}
		x := make([]float32, len(in.d))
		for i := range x {
			x[i] = float32(r.Float64()*2 - 1)
			in.d[i] = float64(x[i])
		}
		c1 := refAct(refBN(refConv(in, w["c1/kernel"], 3, 3, 4, 2, [4]int{0, 1, 1, 1}, false), w, "c1_bn"), 6)
		dw := refAct(refBN(refConv(c1, w["dw/depthwise_kernel"], 3, 3, 4, 1, [4]int{1, 1, 1, 1}, true), w, "dw_bn"), 6)
		pw := refBN(refBias(refConv(dw, w["pw/kernel"], 1, 1, 4, 1, [4]int{}, false), w["pw/bias"]), w, "pw_bn")
		add := fmap{pw.h, pw.w, pw.c, make([]float64, len(pw.d))}
		for i := range add.d {
			add.d[i] = pw.d[i] + c1.d[i]
		}
		// c1 is 4x4 ((9+0+1-3)/2+1, (7+1+1-3)/2+1); SAME with stride 2: out 2x2, total padding
		// (2-1)*2+3-4 = 1 on each axis, the extra row/column at the bottom/right.
		dw2 := refAct(refBias(refConv(add, w["dw2/depthwise_kernel"], 3, 3, 4, 2, [4]int{0, 1, 0, 1}, true), w["dw2/bias"]), math.Inf(1))

		for _, want := range []struct {
			name string
			f    fmap
		}{{"c1_relu", c1}, {"dw_relu", dw}, {"pw_bn", pw}, {"add", add}, {"dw2", dw2}} {
			for _, threads := range []int{1, 3} {
				model.Threads = threads
				got, err := model.Forward(x, want.name)
				if err != nil {
					t.Fatal(err)
				}
				g := got[0]
				if g.H != want.f.h || g.W != want.f.w || g.C != want.f.c {
					t.Fatalf("%s: shape %dx%dx%d, want %dx%dx%d", want.name, g.H, g.W, g.C, want.f.h, want.f.w, want.f.c)
				}
				for i, v := range want.f.d {
					if math.Abs(float64(g.Data[i])-v) > 1e-4*(1+math.Abs(v)) {
						t.Fatalf("%s threads=%d [%d]: got %v, want %v", want.name, threads, i, g.Data[i], v)
					}
				}
			}
		}
	}
}
