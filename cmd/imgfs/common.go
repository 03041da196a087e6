package main

// Shared helpers every subcommand uses: exit codes, store opening, passphrases, vault unlock,
// cache directories and progress bars. The exit codes are documented in docs/cli.md.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/storeurl"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/keyring"
	"github.com/imgfs/imgfs/fs/control"
	"github.com/imgfs/imgfs/fs/core"
	"github.com/imgfs/imgfs/fs/vault"
)

// Exit codes (docs/cli.md).
const (
	exitOK          = 0
	exitError       = 1   // anything not listed below
	exitUsage       = 2   // bad flags or arguments
	exitPassphrase  = 3   // wrong passphrase (or damaged vault header), no passphrase available
	exitVault       = 4   // no vault in the store (or, for init, a vault already exists)
	exitIntegrity   = 5   // check found corrupt or missing objects; a read failed verification
	exitUnreachable = 6   // the store could not be opened or reached
	exitBusy        = 7   // the vault is locked by a writer mount or another gc
	exitInterrupted = 130 // interrupted by SIGINT/SIGTERM
)

// codeError attaches an exit code to an error without changing its message.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

// withCode marks err so that run() exits with code.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codeError{code: code, err: err}
}

// usageErrorf is a usage error (exit 2).
func usageErrorf(format string, a ...any) error {
	return withCode(exitUsage, fmt.Errorf(format, a...))
}

// errBusy is what commands return (wrapped) when a lock is held by someone else.
var errBusy = errors.New("vault is busy")

// Global flags (persistent on rootCmd).
var (
	flagStore          string
	flagPassphraseFile string
)

func init() {
	pf := rootCmd.PersistentFlags()
	pf.StringVar(&flagStore, "store", "", "store URL: a directory or s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX] (default $IMGFS_STORE, else $XDG_DATA_HOME/imgfs/store)")
	pf.StringVar(&flagPassphraseFile, "passphrase-file", "", "read the passphrase from this file (first line); see also $IMGFS_PASSPHRASE_FILE")
	rootCmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return withCode(exitUsage, err)
	})
}

// run executes rootCmd and maps the error to a documented exit code, printing one line
// "imgfs: <message>" on stderr.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := rootCmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	if code == exitInterrupted {
		fmt.Fprintln(os.Stderr, "imgfs: interrupted")
		return code
	}
	fmt.Fprintln(os.Stderr, "imgfs: "+oneLine(err.Error()))
	return code
}

// exitCode classifies err (see the constants above).
func exitCode(err error) int {
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	switch {
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, keyring.ErrWrongPassphrase):
		return exitPassphrase
	case errors.Is(err, keyring.ErrNoVault), errors.Is(err, keyring.ErrVaultExists):
		return exitVault
	case errors.Is(err, dedup.ErrCorrupt), errors.Is(err, core.ErrRollback):
		return exitIntegrity
	case errors.Is(err, errBusy), errors.Is(err, core.ErrLeaseHeld), errors.Is(err, syscall.EBUSY), errors.Is(err, control.ErrInUse):
		return exitBusy
	case isUnreachable(err):
		return exitUnreachable
	}
	// cobra's own argument errors carry no type; recognise the fixed phrases it uses.
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "received ", "invalid argument"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, "\n"+p) {
			return exitUsage
		}
	}
	return exitError
}

// isUnreachable reports network failures (backend.IsNetwork) and errors the backend calls
// transient.
func isUnreachable(err error) bool {
	return backend.IsTransient(err) || backend.IsNetwork(err)
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "; ")
}

// exactArgs and rangeArgs are cobra argument validators whose errors exit with code 2.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s takes %d argument(s), got %d (see imgfs %s --help)", cmd.Name(), n, len(args), cmd.Name())
		}
		return nil
	}
}

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usageErrorf("%s takes %d to %d arguments, got %d (see imgfs %s --help)", cmd.Name(), lo, hi, len(args), cmd.Name())
		}
		return nil
	}
}

// storeURLFor returns the store URL the command works on: --store, else $IMGFS_STORE, else "".
func storeURLFor() string {
	if flagStore != "" {
		return flagStore
	}
	return os.Getenv("IMGFS_STORE")
}

// openStoreURL is storeurl.Open (a variable so a unit test can substitute it).
var openStoreURL = storeurl.Open

// openStore opens a store URL: a directory path (local store) or s3:http(s)://HOST:PORT/BUCKET[/PREFIX].
// An empty url means the default local store ($XDG_DATA_HOME/imgfs/store).
func openStore(ctx context.Context, url string) (backend.Store, error) {
	s, err := openStoreURL(ctx, url)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err
		}
		name := url
		if name == "" {
			name = "the default store"
		}
		return nil, withCode(exitUnreachable, fmt.Errorf("cannot open store %s: %w (check --store and, for S3, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)", name, err))
	}
	return s, nil
}

// passphraseSource names where a passphrase comes from: the flag and environment variables
// for the current passphrase, or those for a new one (passwd).
type passphraseSource struct {
	flag     string // value of the --...-file flag
	fileEnv  string // IMGFS_PASSPHRASE_FILE
	valueEnv string // IMGFS_PASSPHRASE
	prompt   string // "Passphrase"
}

var currentPassphrase = passphraseSource{fileEnv: "IMGFS_PASSPHRASE_FILE", valueEnv: "IMGFS_PASSPHRASE", prompt: "Passphrase"}

// errNoPassphrase: nothing to read a passphrase from.
var errNoPassphrase = errors.New("no passphrase: set IMGFS_PASSPHRASE_FILE or run on a terminal")

// readPassphrase gets the passphrase from --passphrase-file, IMGFS_PASSPHRASE_FILE,
// IMGFS_PASSPHRASE or a no-echo prompt (twice when confirm is set). Never from argv.
func readPassphrase(cmd *cobra.Command, confirm bool) ([]byte, error) {
	src := currentPassphrase
	src.flag = flagPassphraseFile
	return readPassphraseFrom(cmd, src, confirm)
}

func readPassphraseFrom(cmd *cobra.Command, src passphraseSource, confirm bool) ([]byte, error) {
	if src.flag != "" {
		return readPassphraseFile(src.flag)
	}
	if f := os.Getenv(src.fileEnv); f != "" {
		return readPassphraseFile(f)
	}
	if v, ok := os.LookupEnv(src.valueEnv); ok {
		if v == "" {
			return nil, withCode(exitPassphrase, fmt.Errorf("%s is set but empty", src.valueEnv))
		}
		return []byte(v), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		if src.fileEnv == currentPassphrase.fileEnv {
			return nil, withCode(exitPassphrase, errNoPassphrase)
		}
		return nil, withCode(exitPassphrase, fmt.Errorf("no new passphrase: set %s or run on a terminal", src.fileEnv))
	}
	p, err := promptNoEcho(fd, src.prompt+": ")
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		return nil, withCode(exitPassphrase, errors.New("empty passphrase"))
	}
	if confirm {
		q, err := promptNoEcho(fd, "Repeat "+strings.ToLower(src.prompt[:1])+src.prompt[1:]+": ")
		if err != nil {
			clear(p)
			return nil, err
		}
		same := bytes.Equal(p, q)
		clear(q)
		if !same {
			clear(p)
			return nil, withCode(exitPassphrase, errors.New("the passphrases do not match; try again"))
		}
	}
	return p, nil
}

// promptNoEcho prints prompt on stderr and reads a line from the terminal without echo.
func promptNoEcho(fd int, prompt string) ([]byte, error) {
	fmt.Fprint(os.Stderr, prompt)
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	return p, nil
}

// readPassphraseFile returns the first line of f (without its line ending).
func readPassphraseFile(f string) ([]byte, error) {
	b, err := os.ReadFile(f)
	if err != nil {
		// The error names the file, never its content.
		return nil, withCode(exitPassphrase, fmt.Errorf("cannot read passphrase file: %w", err))
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		clear(b[i:])
		b = b[:i]
	}
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, withCode(exitPassphrase, fmt.Errorf("passphrase file %s is empty", f))
	}
	return b, nil
}

// kdfParams are the Argon2id parameters for new key slots: the keyring default, with the
// memory lowered by IMGFS_KDF_MEMORY_KIB (tests), never below the keyring's floor.
func kdfParams() (keyring.KDFParams, error) {
	p := keyring.DefaultKDF
	if v := os.Getenv("IMGFS_KDF_MEMORY_KIB"); v != "" {
		m, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, usageErrorf("IMGFS_KDF_MEMORY_KIB=%q is not a number of KiB", v)
		}
		if m < uint64(keyring.MinKDF.MemoryKiB) {
			m = uint64(keyring.MinKDF.MemoryKiB)
		}
		if m > uint64(keyring.MaxKDF.MemoryKiB) {
			m = uint64(keyring.MaxKDF.MemoryKiB)
		}
		p.MemoryKiB = uint32(m)
	}
	return p, nil
}

// unlockVault reads the passphrase and unlocks the vault in store. A wrong passphrase gives
// keyring.ErrWrongPassphrase (one generic message, exit code 3) and nothing else.
func unlockVault(ctx context.Context, cmd *cobra.Command, store backend.Store) (*keyring.Keys, error) {
	return vault.UnlockKeys(ctx, store, existingVaultPassphrase(cmd))
}

// existingVaultPassphrase reads the passphrase of the store's vault; a store without a vault
// is an error (checked first, so a missing vault is not answered with a passphrase prompt).
func existingVaultPassphrase(cmd *cobra.Command) func(context.Context, backend.Store) ([]byte, error) {
	src := currentPassphrase
	src.flag = flagPassphraseFile
	return existingVaultPassphraseFrom(cmd, src)
}

func existingVaultPassphraseFrom(cmd *cobra.Command, src passphraseSource) func(context.Context, backend.Store) ([]byte, error) {
	return func(ctx context.Context, store backend.Store) ([]byte, error) {
		ok, err := keyring.Exists(ctx, store)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: run imgfs init first, or check --store", keyring.ErrNoVault)
		}
		return readPassphraseFrom(cmd, src, false)
	}
}

// unlockKeepingPassphrase is vault.UnlockKeys for the commands that need the passphrase
// again (rekey, passwd): it returns a copy, which the caller clears.
func unlockKeepingPassphrase(ctx context.Context, store backend.Store, read func(context.Context, backend.Store) ([]byte, error)) (*keyring.Keys, []byte, error) {
	var pass []byte
	keys, err := vault.UnlockKeys(ctx, store, func(ctx context.Context, store backend.Store) ([]byte, error) {
		p, err := read(ctx, store)
		pass = bytes.Clone(p)
		return p, err
	})
	if err != nil {
		clear(pass)
		return nil, nil, err
	}
	return keys, pass, nil
}

// defaultStorePath is the local default store directory: $XDG_DATA_HOME/imgfs/store.
func defaultStorePath() string { return storeurl.Default() }

// cacheDirFor is the default local state directory of a store:
// $XDG_CACHE_HOME/imgfs/<first 16 hex digits of SHA-256(canonical store URL)>.
func cacheDirFor(url string) (string, error) {
	canon := url
	switch {
	case url == "":
		canon = defaultStorePath()
	case strings.HasPrefix(url, "s3:"):
		canon = strings.TrimRight(url, "/")
	case strings.HasPrefix(url, "file://"):
		canon = filepath.Clean(strings.TrimPrefix(url, "file://"))
	default:
		a, err := filepath.Abs(url)
		if err != nil {
			return "", err
		}
		canon = a
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set XDG_CACHE_HOME or pass --cache: %w", err)
	}
	h := sha256.Sum256([]byte(canon))
	return filepath.Join(base, "imgfs", hex.EncodeToString(h[:8])), nil
}

// stderrIsTerminal decides whether progress bars are drawn.
func stderrIsTerminal() bool { return term.IsTerminal(int(os.Stderr.Fd())) }

// progress is a progress bar on stderr when stderr is a terminal, a no-op otherwise.
type progress struct{ bar *progressbar.ProgressBar }

// newProgress starts a bar of max units (bytes when isBytes); max < 0 is a spinner.
func newProgress(max int64, desc string, isBytes bool) *progress {
	if !stderrIsTerminal() {
		return &progress{}
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionOnCompletion(func() {}),
	}
	if isBytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	}
	return &progress{bar: progressbar.NewOptions64(max, opts...)}
}

func (p *progress) Add(n int64) {
	if p != nil && p.bar != nil {
		_ = p.bar.Add64(n)
	}
}

func (p *progress) Finish() {
	if p != nil && p.bar != nil {
		_ = p.bar.Finish()
	}
}

// session is an unlocked vault with its namespace open (import, export, ls, check, gc).
type session struct {
	store backend.Store
	keys  *keyring.Keys
	fs    *core.FS
	url   string
	v     *vault.Vault
}

// cacheFlagHelp documents --cache for the commands that open the namespace.
const cacheFlagHelp = "local state directory (default $XDG_CACHE_HOME/imgfs/<hash of the store URL>, shared with mount)"

// openSession opens the store, unlocks the vault and opens its namespace with the cache
// directory cacheDir ("" = cacheDirFor(store URL)). A writer session takes the store's
// writer lease, so it fails (exit 7) while a writer mount runs.
func openSession(cmd *cobra.Command, cacheDir string, readOnly bool) (*session, error) {
	ctx := cmd.Context()
	url := storeURLFor()
	if cacheDir == "" {
		var err error
		if cacheDir, err = cacheDirFor(url); err != nil {
			return nil, err
		}
	}
	v, err := vault.Unlock(ctx, vault.Config{URL: url, OpenStore: openStore, Passphrase: existingVaultPassphrase(cmd)})
	if err != nil {
		return nil, err
	}
	if err := v.Open(ctx, core.Options{CacheDir: cacheDir, ReadOnly: readOnly, Logger: cliLogger()}); err != nil {
		v.Close()
		if errors.Is(err, syscall.EBUSY) {
			return nil, withCode(exitBusy, fmt.Errorf("%w; unmount the vault first (imgfs umount), or give this command another --cache", err))
		}
		return nil, err
	}
	if why := v.FS.LocalWork(); why != "" && !readOnly {
		// A writer-side command (import, gc) first finishes the work this cache holds (a
		// crashed mount's): stored and in a root before it goes on (docs/core.md).
		fmt.Fprintf(cmd.ErrOrStderr(), "imgfs: this cache holds work that is not in the store yet (%s); storing it first\n", why)
		if err := v.FS.Sync(ctx); err != nil {
			v.Close()
			return nil, fmt.Errorf("storing this cache's unsynced work (%s) failed: %w; run the command again when the store is reachable (imgfs mount keeps working from the cache meanwhile)", why, err)
		}
	}
	return &session{store: v.Store, keys: v.Keys, fs: v.FS, url: url, v: v}, nil
}

// Close closes the namespace (committing pending work of a writer session) and the store.
func (s *session) Close() error { return s.v.Close() }

// cliLogger: core's log lines go to stderr at warning level and above
// (IMGFS_LOG=debug|info|warn|error changes the level).
func cliLogger() *slog.Logger {
	lvl := slog.LevelWarn
	switch strings.ToLower(os.Getenv("IMGFS_LOG")) {
	case "debug":
		lvl = slog.LevelDebug
	case "info":
		lvl = slog.LevelInfo
	case "error":
		lvl = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// vaultPath cleans a path inside the vault: "" and "/" are the root.
func vaultPath(p string) string {
	p = filepath.ToSlash(filepath.Clean("/" + p))
	return p
}

// parseSize parses a byte count: a whole number with an optional unit, binary (K, KiB, M,
// MiB, G, GiB, T, TiB) or decimal (KB, MB, GB, TB).
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}}
	num, mult := s, int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want a whole number of bytes with an optional unit, as in 512MiB or 20GiB")
	}
	if n > math.MaxInt64/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}
