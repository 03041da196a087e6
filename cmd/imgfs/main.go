// Command imgfs is the imgfs CLI: vault management, import/export, mount.
package main

import (
	"os"

	"github.com/spf13/cobra"
)

// rootCmd is the top-level command; each subcommand file registers itself in init().
var rootCmd = &cobra.Command{
	Use:           "imgfs",
	Short:         "Encrypted, deduplicated photo file system with near-duplicate detection",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	os.Exit(run())
}
