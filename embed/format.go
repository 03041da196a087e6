package embed

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
)

// The .imgfsmodel file format, version 1 (all integers little-endian):
//
//	offset 0   8 bytes  magic "IMGFSMDL"
//	offset 8   uint32   format version (1)
//	offset 12  uint32   header length N (at most MaxHeaderLen)
//	offset 16  N bytes  header: UTF-8 JSON, a FileHeader (graph, tensor table, data checksum)
//	then       zero bytes up to the next multiple of 4
//	then       float32  tensor data, tensors back to back in tensor-table order
//
// Each tensor-table entry gives a name, a shape and an offset in float32 elements from the start
// of the data; FileHeader.DataSHA256 is the SHA-256 of the data bytes and is checked at load.
// Batch normalisation is already folded into the convolution weights and biases by the
// converter, so the graph has only conv2d, dwconv2d, add and act nodes.
const (
	fileMagic     = "IMGFSMDL"
	FormatVersion = 1
	// MaxHeaderLen bounds the JSON header so a corrupt length cannot make us allocate gigabytes.
	MaxHeaderLen = 16 << 20
	// MaxTensorElems bounds the weight data (64 Mi float32 = 256 MiB).
	MaxTensorElems = 64 << 20
)

// FileHeader is the JSON header of a model file.
type FileHeader struct {
	Name       string         `json:"name"`   // short model name, e.g. "mobilenet_v2"
	Source     string         `json:"source"` // where the weights came from (package, version, path)
	Input      InputSpec      `json:"input"`
	Nodes      []NodeSpec     `json:"nodes"`
	Tensors    []TensorSpec   `json:"tensors"`
	DataSHA256 string         `json:"data_sha256"`
	Meta       map[string]any `json:"meta,omitempty"`
}

// InputSpec is the network's input geometry (NHWC, batch omitted).
type InputSpec struct {
	Name     string `json:"name"`
	Height   int    `json:"height"`
	Width    int    `json:"width"`
	Channels int    `json:"channels"`
}

// NodeSpec is one operation of the graph. Nodes are listed in an order where every input
// comes before its consumers; the input image is the node named Input.Name.
type NodeSpec struct {
	Name   string   `json:"name"`
	Op     string   `json:"op"` // conv2d | dwconv2d | add | act
	Inputs []string `json:"inputs"`
	// Fused lists the source-framework layers this node stands for (documentation only).
	Fused   []string `json:"fused,omitempty"`
	Weights string   `json:"weights,omitempty"` // conv2d: HWIO [kh,kw,cin,cout]; dwconv2d: [kh,kw,c]
	Bias    string   `json:"bias,omitempty"`    // [cout]
	Stride  [2]int   `json:"stride,omitempty"`  // [sh, sw]
	Pad     [4]int   `json:"pad,omitempty"`     // [top, bottom, left, right] zero padding
	Act     string   `json:"act,omitempty"`     // "", "linear", "relu", "relu6"
}

// TensorSpec locates one weight tensor in the data section.
type TensorSpec struct {
	Name   string `json:"name"`
	Shape  []int  `json:"shape"`
	Offset int64  `json:"offset"` // in float32 elements
}

// ModelFile is a parsed model file: header plus tensors by name.
type ModelFile struct {
	Header  FileHeader
	Tensors map[string][]float32
}

func numElems(shape []int) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d <= 0 || d > MaxTensorElems {
			return 0, fmt.Errorf("bad dimension %d", d)
		}
		n *= int64(d)
		if n > MaxTensorElems {
			return 0, errors.New("tensor too large")
		}
	}
	return n, nil
}

// WriteModelFile writes h and the named tensors (in h.Tensors order, offsets recomputed).
func WriteModelFile(w io.Writer, h FileHeader, tensors map[string][]float32) error {
	var data bytes.Buffer
	var off int64
	for i := range h.Tensors {
		t := &h.Tensors[i]
		v, ok := tensors[t.Name]
		if !ok {
			return fmt.Errorf("embed: tensor %q missing", t.Name)
		}
		n, err := numElems(t.Shape)
		if err != nil || n != int64(len(v)) {
			return fmt.Errorf("embed: tensor %q has %d values, shape %v", t.Name, len(v), t.Shape)
		}
		t.Offset = off
		off += n
		buf := make([]byte, 4*len(v))
		for j, f := range v {
			binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
		}
		data.Write(buf)
	}
	sum := sha256.Sum256(data.Bytes())
	h.DataSHA256 = hex.EncodeToString(sum[:])
	hj, err := json.Marshal(h)
	if err != nil {
		return err
	}
	var pre [16]byte
	copy(pre[:], fileMagic)
	binary.LittleEndian.PutUint32(pre[8:], FormatVersion)
	binary.LittleEndian.PutUint32(pre[12:], uint32(len(hj)))
	pad := (4 - (16+len(hj))%4) % 4
	for _, b := range [][]byte{pre[:], hj, make([]byte, pad), data.Bytes()} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// ParseModelFile decodes and validates a whole model file held in memory.
func ParseModelFile(b []byte) (*ModelFile, error) {
	if len(b) < 16 || string(b[:8]) != fileMagic {
		return nil, errors.New("embed: not an imgfs model file (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion {
		return nil, fmt.Errorf("embed: model file format version %d not supported (want %d)", v, FormatVersion)
	}
	hl := int(binary.LittleEndian.Uint32(b[12:]))
	if hl > MaxHeaderLen || 16+hl > len(b) {
		return nil, errors.New("embed: model file header truncated or too long")
	}
	var h FileHeader
	dec := json.NewDecoder(bytes.NewReader(b[16 : 16+hl]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("embed: model file header: %v", err)
	}
	start := 16 + hl + (4-(16+hl)%4)%4
	if start > len(b) {
		return nil, errors.New("embed: model file truncated before data")
	}
	data := b[start:]
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != h.DataSHA256 {
		return nil, errors.New("embed: model file data checksum mismatch (corrupt or truncated file; re-run scripts/fetch-model.sh)")
	}
	if len(data)%4 != 0 {
		return nil, errors.New("embed: model file data is not a whole number of float32")
	}
	total := int64(len(data) / 4)
	mf := &ModelFile{Header: h, Tensors: make(map[string][]float32, len(h.Tensors))}
	for _, t := range h.Tensors {
		n, err := numElems(t.Shape)
		if err != nil {
			return nil, fmt.Errorf("embed: tensor %q: %v", t.Name, err)
		}
		if t.Offset < 0 || t.Offset > total || n > total-t.Offset {
			return nil, fmt.Errorf("embed: tensor %q lies outside the data", t.Name)
		}
		if _, dup := mf.Tensors[t.Name]; dup {
			return nil, fmt.Errorf("embed: tensor %q listed twice", t.Name)
		}
		v := make([]float32, n)
		raw := data[4*t.Offset:]
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		mf.Tensors[t.Name] = v
	}
	return mf, nil
}
