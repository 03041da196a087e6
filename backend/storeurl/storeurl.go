// Package storeurl opens a backend.Store from the store URL a user gives on the command line.
//
//	""                                   the default local store, Default()
//	/path/to/dir, ./dir, file:///path    a local directory store (backend/local)
//	s3:http://HOST:PORT/BUCKET[/PREFIX]  an S3-compatible store (backend/s3)
//	s3:https://HOST[:PORT]/BUCKET[/PREFIX][?region=R]
//
// Every store comes wrapped in backend/retry (bounded retries, per-request deadlines), the
// one retry layer (a local directory keeps its Path); S3 credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS credentials file.
package storeurl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/backend/retry"
	"github.com/imgfs/imgfs/backend/s3"
)

// Default returns the default local store directory: $XDG_DATA_HOME/imgfs/store, or
// ~/.local/share/imgfs/store when XDG_DATA_HOME is unset or not an absolute path.
func Default() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "imgfs", "store")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "."
	}
	return filepath.Join(home, ".local", "share", "imgfs", "store")
}

// IsRemote reports whether url names a remote (S3) store rather than a local directory.
func IsRemote(url string) bool { return strings.HasPrefix(url, "s3:") }

// Open opens the store that url names; see the package comment for the forms.
func Open(ctx context.Context, url string) (backend.Store, error) {
	switch {
	case url == "":
		return openLocal(Default())
	case strings.HasPrefix(url, "s3:"):
		st, err := s3.Open(ctx, url)
		if err != nil {
			return nil, err
		}
		return retry.New(st, retry.Options{MaxParallelPuts: 16}), nil
	case strings.HasPrefix(url, "file://"):
		p := strings.TrimPrefix(url, "file://")
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("store URL %q: a file:// URL needs an absolute path (file:///dir)", url)
		}
		return openLocal(p)
	case strings.Contains(url, "://"):
		return nil, fmt.Errorf("store URL %q: unknown kind of store; use a directory path or s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]", url)
	default:
		return openLocal(url)
	}
}

// openLocal opens a local directory store behind the same retry layer as S3 (a directory on
// a NAS fails transiently too: ESTALE, ETIMEDOUT).
func openLocal(dir string) (backend.Store, error) {
	st, err := local.Open(dir)
	if err != nil {
		return nil, err
	}
	return retry.Wrap(st, retry.Options{}), nil
}
