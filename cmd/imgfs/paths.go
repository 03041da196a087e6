package main

// Local paths given on the command line or in the environment are made absolute before a
// command runs (docs/cli.md). The mount daemon runs in "/", so a relative --store, --cache
// or $IMGFS_MODEL would name another place there than where the user typed it.

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// pathFlags are the flags, of any command, whose value is a local file or directory.
// A new flag that takes a path belongs here.
var pathFlags = map[string]bool{
	"cache":                   true,
	"passphrase-file":         true,
	"new-passphrase-file":     true,
	"convergence-secret-file": true,
	"from":                    true,
	"model":                   true,
	"cpuprofile":              true,
	"blockprofile":            true,
}

// pathEnv are the environment variables that name a local path; the daemon gets them
// absolute (spawnDaemon).
var pathEnv = []string{"IMGFS_STORE", "IMGFS_MODEL", "IMGFS_RUNTIME_DIR"}

func init() {
	rootCmd.PersistentPreRunE = absPathFlags
}

// absPathFlags rewrites every path flag the user set, and --store when it is a local
// directory, to an absolute path.
func absPathFlags(cmd *cobra.Command, _ []string) error {
	var err error
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if err != nil || (!pathFlags[f.Name] && f.Name != "store") {
			return
		}
		v := f.Value.String()
		if v == "" {
			return
		}
		var abs string
		if f.Name == "store" {
			abs, err = absStoreURL(v)
		} else {
			abs, err = filepath.Abs(v)
		}
		if err != nil {
			err = usageErrorf("--%s %s: %v", f.Name, v, err)
			return
		}
		if abs != v {
			err = f.Value.Set(abs)
		}
	})
	return err
}

// absStoreURL makes a local store directory absolute; s3: and file:// URLs and "" (the
// default store) are returned as they are.
func absStoreURL(url string) (string, error) {
	if url == "" || strings.Contains(url, "://") || strings.HasPrefix(url, "s3:") {
		return url, nil
	}
	return filepath.Abs(url)
}

// absPathEnv returns env with the pathEnv variables made absolute (a local store only for
// IMGFS_STORE).
func absPathEnv(env []string) ([]string, error) {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, v, _ := strings.Cut(kv, "=")
		for _, p := range pathEnv {
			if name != p || v == "" {
				continue
			}
			var abs string
			var err error
			if name == "IMGFS_STORE" {
				abs, err = absStoreURL(v)
			} else {
				abs, err = filepath.Abs(v)
			}
			if err != nil {
				return nil, fmt.Errorf("%s=%s: %v", name, v, err)
			}
			kv = name + "=" + abs
		}
		out = append(out, kv)
	}
	return out, nil
}
