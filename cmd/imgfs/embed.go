package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/embed"
)

func init() {
	var asJSON bool
	var modelPath string
	var workers int
	cmd := &cobra.Command{
		Use:   "embed [--json] [--model FILE] FILE...",
		Short: "Print the near-duplicate embedding and perceptual hashes of image files (and the time each took)",
		Long: "Decodes each image, runs the pretrained CNN and prints its embedding vector.\n" +
			"The model file is found via --model, $IMGFS_MODEL, ./models, next to the binary, or in\n" +
			"$XDG_DATA_HOME/imgfs/models (~/.local/share/imgfs/models); scripts/fetch-model.sh\n" +
			"(make setup) creates and installs it. --json prints one JSON object per line.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" {
				p, err := embed.LocateModel(embed.DefaultModelName)
				if err != nil {
					return err
				}
				modelPath = p
			}
			m, err := embed.Load(modelPath)
			if err != nil {
				return err
			}
			return runEmbed(cmd, m, args, asJSON, workers)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per file")
	cmd.Flags().StringVar(&modelPath, "model", "", "model file (default: $IMGFS_MODEL, ./models/"+embed.DefaultModelName+".imgfsmodel, ~/.local/share/imgfs/models/...)")
	cmd.Flags().IntVar(&workers, "workers", runtime.GOMAXPROCS(0), "files embedded in parallel")
	rootCmd.AddCommand(cmd)
}

type embedResult struct {
	File    string    `json:"file"`
	ModelID string    `json:"model_id,omitempty"`
	Dims    int       `json:"dims,omitempty"`
	PHash   string    `json:"phash,omitempty"`
	DHash   string    `json:"dhash,omitempty"`
	Millis  float64   `json:"ms"`
	Vector  []float32 `json:"vector,omitempty"`
	Error   string    `json:"error,omitempty"`
}

func embedOne(m *embed.Model, path string) embedResult {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return embedResult{File: path, Error: err.Error()}
	}
	defer f.Close()
	e, err := embed.EmbedFile(m, f)
	r := embedResult{File: path, Millis: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.ModelID, r.Dims, r.Vector = e.ModelID, len(e.Vector), e.Vector
	r.PHash, r.DHash = fmt.Sprintf("%016x", e.PHash), fmt.Sprintf("%016x", e.DHash)
	return r
}

func runEmbed(cmd *cobra.Command, m *embed.Model, files []string, asJSON bool, workers int) error {
	workers = max(1, min(workers, len(files)))
	results := make([]embedResult, len(files))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = embedOne(m, files[i])
			}
		}()
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	out := cmd.OutOrStdout()
	failed := 0
	for _, r := range results {
		if r.Error != "" {
			failed++
			fmt.Fprintf(cmd.ErrOrStderr(), "imgfs embed: %s: %s\n", r.File, r.Error)
		}
		if asJSON {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, string(b))
			continue
		}
		if r.Error != "" {
			continue
		}
		var sb strings.Builder
		for i, v := range r.Vector {
			if i > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(strconv.FormatFloat(float64(v), 'g', 6, 32))
		}
		fmt.Fprintf(out, "%s\t%s\t%d dims\tphash %s\tdhash %s\t%.1f ms\n%s\n", r.File, r.ModelID, r.Dims, r.PHash, r.DHash, r.Millis, sb.String())
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files could not be embedded", failed, len(files))
	}
	return nil
}
