package embed

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	testModelOnce sync.Once
	testModelVal  *Model
	testModelErr  error
)

// testModel loads the real model (scripts/fetch-model.sh puts it in models/ at the repository
// root). Tests that need it skip when it is missing, except under CI=true where they fail.
func testModel(tb testing.TB) *Model {
	tb.Helper()
	testModelOnce.Do(func() {
		p := os.Getenv("IMGFS_MODEL")
		if p == "" {
			p = filepath.Join("..", "models", DefaultModelName+".imgfsmodel")
		}
		if _, err := os.Stat(p); err != nil {
			testModelErr = err
			return
		}
		testModelVal, testModelErr = Load(p)
	})
	if testModelErr != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("model file needed under CI=true (run: bash scripts/fetch-model.sh): %v", testModelErr)
		}
		tb.Skipf("model file missing (run: bash scripts/fetch-model.sh): %v", testModelErr)
	}
	return testModelVal
}
