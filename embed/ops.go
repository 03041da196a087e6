package embed

import (
	"fmt"
	"sync"

	"gorgonia.org/tensor"
)

// parallelRows runs f over [0,n) split into at most threads contiguous blocks.
func parallelRows(n, threads int, f func(lo, hi int)) {
	if threads <= 1 || n < 2*threads {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	step := (n + threads - 1) / threads
	for lo := 0; lo < n; lo += step {
		hi := min(lo+step, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// conv2d computes a dense convolution as one matrix product: rows are output pixels,
// columns output channels. A 1x1 stride-1 convolution multiplies the input directly
// ([H*W, Cin] x [Cin, Cout]); others go through an im2col buffer first.
func conv2d(n *node, src, dst, col []float32, threads int) error {
	rows := n.h * n.w
	k := n.kh * n.kw * n.ic
	a := src
	if !(n.kh == 1 && n.kw == 1 && n.sh == 1 && n.sw == 1 && n.pad == [4]int{}) {
		a = col[:rows*k]
		parallelRows(n.h, threads, func(y0, y1 int) { im2col(n, src, a, y0, y1) })
	}
	parallelRows(rows, threads, func(lo, hi int) {
		if err := matmul(a[lo*k:hi*k], hi-lo, k, n.wt, dst[lo*n.c:hi*n.c]); err != nil {
			panic(err) // shapes are validated at load; an error here is a bug
		}
		biasActRows(dst[lo*n.c:hi*n.c], n.bias, n.act)
	})
	return nil
}

// matmul computes c[m,n] = a[m,k] x w[k,n] with the tensor package (BLAS sgemm).
func matmul(a []float32, m, k int, w *tensor.Dense, c []float32) error {
	nc := w.Shape()[1]
	at := tensor.New(tensor.WithShape(m, k), tensor.WithBacking(a))
	ct := tensor.New(tensor.WithShape(m, nc), tensor.WithBacking(c))
	if err := (tensor.StdEng{}).MatMul(at, w, ct); err != nil {
		return fmt.Errorf("embed: matmul: %v", err)
	}
	return nil
}

// im2col writes, for output rows y0..y1, one row per output pixel holding the receptive
// field in (ky, kx, cin) order — the order of an HWIO kernel flattened to [kh*kw*cin, cout].
func im2col(n *node, src, col []float32, y0, y1 int) {
	k := n.kh * n.kw * n.ic
	for y := y0; y < y1; y++ {
		for x := 0; x < n.w; x++ {
			row := col[(y*n.w+x)*k : (y*n.w+x+1)*k]
			p := 0
			for ky := 0; ky < n.kh; ky++ {
				iy := y*n.sh + ky - n.pad[0]
				for kx := 0; kx < n.kw; kx++ {
					ix := x*n.sw + kx - n.pad[2]
					seg := row[p : p+n.ic]
					if iy < 0 || iy >= n.ih || ix < 0 || ix >= n.iw {
						clear(seg)
					} else {
						copy(seg, src[(iy*n.iw+ix)*n.ic:])
					}
					p += n.ic
				}
			}
		}
	}
}

// dwconv2d is a depthwise convolution (multiplier 1) with bias and activation, NHWC.
func dwconv2d(n *node, src, dst []float32, threads int) {
	w := n.wt.Data().([]float32)
	c := n.c
	parallelRows(n.h, threads, func(y0, y1 int) {
		for y := y0; y < y1; y++ {
			for x := 0; x < n.w; x++ {
				acc := dst[(y*n.w+x)*c : (y*n.w+x+1)*c]
				copy(acc, n.bias)
				for ky := 0; ky < n.kh; ky++ {
					iy := y*n.sh + ky - n.pad[0]
					if iy < 0 || iy >= n.ih {
						continue
					}
					for kx := 0; kx < n.kw; kx++ {
						ix := x*n.sw + kx - n.pad[2]
						if ix < 0 || ix >= n.iw {
							continue
						}
						in := src[(iy*n.iw+ix)*c : (iy*n.iw+ix+1)*c]
						wk := w[(ky*n.kw+kx)*c : (ky*n.kw+kx+1)*c]
						fma(acc, in, wk)
					}
				}
				biasAct(acc, nil, n.act)
			}
		}
	})
}

// fma: acc[i] += a[i]*b[i].
func fma(acc, a, b []float32) {
	a = a[:len(acc)]
	b = b[:len(acc)]
	i := 0
	for ; i+4 <= len(acc); i += 4 {
		acc[i] += a[i] * b[i]
		acc[i+1] += a[i+1] * b[i+1]
		acc[i+2] += a[i+2] * b[i+2]
		acc[i+3] += a[i+3] * b[i+3]
	}
	for ; i < len(acc); i++ {
		acc[i] += a[i] * b[i]
	}
}

// biasActRows adds bias (one value per channel, len(bias) channels per row) and applies act.
func biasActRows(x, bias []float32, act string) {
	c := len(bias)
	for r := 0; r+c <= len(x); r += c {
		row := x[r : r+c]
		switch act {
		case "relu6":
			for i, b := range bias {
				row[i] = min(max(row[i]+b, 0), 6) // branch-free: signs are random
			}
		case "relu":
			for i, b := range bias {
				row[i] = max(row[i]+b, 0)
			}
		default:
			for i, b := range bias {
				row[i] += b
			}
		}
	}
}

// biasAct adds bias (if any) to x elementwise and applies the activation in place.
func biasAct(x, bias []float32, act string) {
	if bias != nil {
		biasActRows(x, bias[:len(x)], act)
		return
	}
	switch act {
	case "relu6":
		for i, v := range x {
			x[i] = min(max(v, 0), 6)
		}
	case "relu":
		for i, v := range x {
			x[i] = max(v, 0)
		}
	}
}

func addAct(dst, p, q []float32, act string) {
	q = q[:len(dst)]
	p = p[:len(dst)]
	for i := range dst {
		dst[i] = p[i] + q[i]
	}
	biasAct(dst, nil, act)
}
