package daemon

import (
	"strings"
	"testing"
)

func TestEnvWithout(t *testing.T) {
	env := []string{"A=1", "IMGFS_PASSPHRASE=secret", "IMGFS_PASSPHRASE_FILE=/x", "IMGFS_PASSPHRASE_X=keep", "B=2"}
	got := strings.Join(envWithout(env, passphraseEnv...), " ")
	if got != "A=1 IMGFS_PASSPHRASE_X=keep B=2" {
		t.Fatalf("envWithout: %q", got)
	}
	if env[1] != "IMGFS_PASSPHRASE=secret" {
		t.Fatal("envWithout modified its input")
	}
}
