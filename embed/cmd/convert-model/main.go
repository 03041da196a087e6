// Command convert-model converts a tfjs layers model bundled in an npm package (model.min.js
// plus group1-shard*.min.js, or model.json plus .bin shards) into an imgfs .imgfsmodel file.
//
//	go run ./embed/cmd/convert-model -dir models/nsfwjs/package/dist/models/mobilenet_v2 \
//	    -name mobilenet_v2 -source "npm nsfwjs@4.3.0" -output out_relu -o models/mobilenet_v2.imgfsmodel
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/imgfs/imgfs/embed"
	"github.com/imgfs/imgfs/embed/tfjs"
)

func main() {
	dir := flag.String("dir", "", "directory holding model.min.js (or model.json) and its weight shards")
	name := flag.String("name", "", "model name recorded in the file (default: the directory's base name)")
	source := flag.String("source", "", "where the weights came from, recorded in the file")
	output := flag.String("output", "out_relu", "name of the last layer to keep")
	out := flag.String("o", "", "output .imgfsmodel path")
	flag.Parse()
	if *dir == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: convert-model -dir DIR -o FILE [-name N] [-source S] [-output LAYER]")
		os.Exit(2)
	}
	if *name == "" {
		*name = filepath.Base(*dir)
	}
	if err := convert(*dir, *name, *source, *output, *out); err != nil {
		fmt.Fprintln(os.Stderr, "convert-model:", err)
		os.Exit(1)
	}
}

func convert(dir, name, source, output, out string) error {
	modelPath := filepath.Join(dir, "model.min.js")
	if _, err := os.Stat(modelPath); err != nil {
		modelPath = filepath.Join(dir, "model.json")
	}
	src, err := os.ReadFile(modelPath)
	if err != nil {
		return err
	}
	m, err := tfjs.ParseModelModule(src)
	if err != nil {
		return err
	}
	// Shards in manifest order; bundled ones are named like the manifest path plus ".min.js".
	var shards bytes.Buffer
	for _, g := range m.WeightsManifest {
		for _, p := range g.Paths {
			if b, err := os.ReadFile(filepath.Join(dir, p+".min.js")); err == nil {
				raw, err := tfjs.ParseShardModule(b)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				shards.Write(raw)
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, p))
			if err != nil {
				return fmt.Errorf("weight shard %s: %w", p, err)
			}
			shards.Write(b)
		}
	}
	w, err := m.Dequantize(shards.Bytes())
	if err != nil {
		return err
	}
	h, tensors, err := tfjs.Convert(m, w, output)
	if err != nil {
		return err
	}
	h.Name = name
	h.Source = strings.TrimSpace(source + " " + filepath.ToSlash(filepath.Base(dir)))
	keys := make([]string, 0, len(w))
	for k := range w {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := embed.WriteModelFile(f, h, tensors); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "convert-model: %d source weights, %d nodes, %d tensors -> %s\n", len(keys), len(h.Nodes), len(h.Tensors), out)
	return os.Rename(tmp, out)
}
