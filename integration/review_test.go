package integration

// imgfs review through a real mount and a real browser (headless Chromium, driven by
// chromedp): the page shows the near-duplicate groups with thumbnails; "delete the others"
// moves copies to .imgfs-trash/ and "not a duplicate" records marks in the vault, both
// checked through the mount (ls .similar/, imgfs similar) and across a remount with a fresh
// cache (a second device), --reindex and --unmark. Requests without the token, with a
// wrong Host or from a foreign Origin are refused. docs/review.md.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromiumBin is Debian's Chromium (scripts/setup.sh installs it).
const chromiumBin = "chromium"

// reviewServer is a running `imgfs review`.
type reviewServer struct {
	cmd  *exec.Cmd
	url  string // with the token
	base string // http://127.0.0.1:PORT
	tok  string
	tmp  string        // its TMPDIR: must stay empty
	done chan struct{} // closed when it exited
	err  error         // its exit status, once done
}

func startReview(t *testing.T, m *Mount) *reviewServer {
	t.Helper()
	tmp := t.TempDir()
	cmd := m.Command(context.Background(), "review", "--no-browser", m.Dir)
	cmd.Env = append(cmd.Env, "TMPDIR="+tmp, "DISPLAY=")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rs := &reviewServer{cmd: cmd, tmp: tmp, done: make(chan struct{})}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u := strings.TrimSpace(sc.Text()); strings.HasPrefix(u, "http://127.0.0.1:") {
				urlc <- u
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() { rs.err = cmd.Wait(); close(rs.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-rs.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-rs.done
		}
	})
	select {
	case u := <-urlc:
		rs.url = u
	case <-rs.done:
		t.Fatalf("imgfs review exited: %v\n%s", rs.err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("imgfs review printed no URL\n%s", stderr.String())
	}
	mt := regexp.MustCompile(`^(http://127\.0\.0\.1:\d+)/\?token=([0-9a-f]{48})$`).FindStringSubmatch(rs.url)
	if mt == nil {
		t.Fatalf("URL %q: want http://127.0.0.1:PORT/?token=<48 hex digits>", rs.url)
	}
	rs.base, rs.tok = mt[1], mt[2]
	return rs
}

// get does one request to the server with extra headers ("Host" sets the Host).
func (rs *reviewServer) get(t *testing.T, path string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", rs.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// newBrowser starts headless Chromium with a fresh profile, with the flags that keep it
// from reaching the network (else it hangs on lookups).
func newBrowser(t *testing.T) (context.Context, string) {
	t.Helper()
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumBin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	// Generous: the machine may be loaded; every wait below polls for a condition.
	ctx, tcancel := context.WithTimeout(ctx, 5*time.Minute)
	t.Cleanup(tcancel)
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx, profile
}

// pageGroups returns the member paths of each group shown, in page order.
func pageGroups(t *testing.T, ctx context.Context) [][]string {
	t.Helper()
	var gs [][]string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll('.group')).map(
		g => Array.from(g.querySelectorAll('.card')).map(c => c.dataset.path))`, &gs)); err != nil {
		t.Fatal(err)
	}
	return gs
}

// waitRender waits until the page has rendered after generation gen.
func waitRender(t *testing.T, ctx context.Context, gen int) int {
	t.Helper()
	var g int
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var state string
		if err := chromedp.Run(ctx,
			chromedp.Evaluate(`document.body.dataset.state`, &state),
			chromedp.Evaluate(`Number(document.body.dataset.gen)`, &g)); err != nil {
			t.Fatal(err)
		}
		if state == "ready" && g > gen {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("page did not render (state %q, gen %d)", state, g)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pageStatus(t *testing.T, ctx context.Context) string {
	var s string
	chromedp.Run(ctx, chromedp.Text("#status", &s, chromedp.ByID))
	return s
}

// waitNames polls ls DIR until it equals want (the kernel caches .similar/ entries ~1 s).
func waitNames(t *testing.T, dir string, want []string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := readNames(t, dir)
		if equalSets(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ls %s = %v, want %v", dir, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestReviewPage(t *testing.T) {
	model := similarModel(t)
	need(t, convertBin, chromiumBin)
	m := startVault(t, vaultOptions{Env: []string{"IMGFS_MODEL=" + model}})
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "edits"), 0o755)
	for name, args := range similarOriginals {
		convert(t, append(args, filepath.Join(src, name))...)
		stem := strings.TrimSuffix(name, ".jpg")
		for _, v := range similarVariants[:2] { // resize, recompress: found at any threshold
			convert(t, append(append([]string{filepath.Join(src, name)}, v.ops...), filepath.Join(src, "edits", stem+"-"+v.name+".jpg"))...)
		}
	}
	for name, args := range similarDistractors {
		convert(t, append(args, filepath.Join(src, name))...)
	}
	addExifDate(t, filepath.Join(src, "wizard.jpg"), "2019:07:14 10:30:00")
	os.MkdirAll(filepath.Join(m.Dir, "backup"), 0o755)
	sh(t, "", fmt.Sprintf("cp -r %s %s/photos && cp %s/wizard.jpg %s/backup/", src, m.Dir, src, m.Dir))
	m.Sync()
	wizard := []string{"backup/wizard.jpg", "photos/edits/wizard-recompress.jpg", "photos/edits/wizard-resize.jpg", "photos/wizard.jpg"}
	shapes := []string{"photos/edits/shapes-recompress.jpg", "photos/edits/shapes-resize.jpg", "photos/shapes.jpg"}
	waitNames(t, filepath.Join(m.Dir, ".similar"), []string{"backup", "photos"})

	rs := startReview(t, m)

	// Refusals: no token, wrong token, a rebinding Host, a foreign Origin.
	for _, c := range []struct {
		name, path string
		hdr        map[string]string
	}{
		{"no token", "/", nil},
		{"no token (api)", "/api/groups", nil},
		{"no token (thumb)", "/thumb?path=photos/wizard.jpg", nil},
		{"wrong token", "/?token=" + strings.Repeat("ab", 24), nil},
		{"wrong Host", "/?token=" + rs.tok, map[string]string{"Host": "rebind.example" + strings.TrimPrefix(rs.base, "http://127.0.0.1")}},
		{"foreign Origin", "/api/groups?token=" + rs.tok, map[string]string{"Origin": "http://evil.example"}},
	} {
		if code, body := rs.get(t, c.path, c.hdr); code != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403 (%s)", c.name, code, body)
		}
	}
	if code, _ := rs.get(t, "/?token="+rs.tok, nil); code != 200 {
		t.Fatalf("with the token: %d", code)
	}

	ctx, profile := newBrowser(t)
	if err := chromedp.Run(ctx, chromedp.Navigate(rs.url)); err != nil {
		t.Fatal(err)
	}
	gen := waitRender(t, ctx, 0)
	gs := pageGroups(t, ctx)
	for _, g := range gs {
		sort.Strings(g)
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i][0] < gs[j][0] })
	if fmt.Sprint(gs) != fmt.Sprint([][]string{wizard, shapes}) {
		t.Fatalf("groups on the page: %v\nwant %v", gs, [][]string{wizard, shapes})
	}
	// Every thumbnail loads (lazy: scroll through first) and is at most 320 px.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var loaded []int
		if err := chromedp.Run(ctx,
			chromedp.Evaluate(`window.scrollTo(0, document.body.scrollHeight)`, nil),
			chromedp.Evaluate(`Array.from(document.querySelectorAll('.card img')).map(i => i.complete ? i.naturalWidth : -1)`, &loaded)); err != nil {
			t.Fatal(err)
		}
		ok := len(loaded) == len(wizard)+len(shapes)
		for _, w := range loaded {
			if w <= 0 || w > 320 {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thumbnails not loaded: widths %v", loaded)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The captions: size, pixel dimensions, score and tier of each photo.
	var caption string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector('.card[data-path="photos/wizard.jpg"] .meta').innerText`, &caption)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"photos/wizard.jpg", "640×480", "KiB", "taken 2019-07-14 10:30:00", "identical", "1.0000"} {
		if !strings.Contains(caption, want) {
			t.Errorf("caption of photos/wizard.jpg lacks %q:\n%s", want, caption)
		}
	}
	shot := filepath.Join(t.TempDir(), "review.png")
	if p := os.Getenv("IMGFS_REVIEW_SCREENSHOT"); p != "" {
		shot = p
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.scrollTo(0, 0)`, nil), chromedp.FullScreenshot(&png, 90)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}

	// Keyboard: "?" shows the help, Escape hides it; "t" filters by tier: "identical" leaves
	// the group with a byte-identical copy; more "t" cycle back to all tiers.
	var hidden bool
	if err := chromedp.Run(ctx, chromedp.KeyEvent("?"), chromedp.Evaluate(`document.getElementById('help').hidden`, &hidden)); err != nil || hidden {
		t.Fatalf("help after '?': hidden %v, %v", hidden, err)
	}
	if err := chromedp.Run(ctx, chromedp.KeyEvent(kb.Escape), chromedp.Evaluate(`document.getElementById('help').hidden`, &hidden)); err != nil || !hidden {
		t.Fatalf("help after Escape: hidden %v, %v", hidden, err)
	}
	if err := chromedp.Run(ctx, chromedp.KeyEvent("t")); err != nil {
		t.Fatal(err)
	}
	gen = waitRender(t, ctx, gen)
	if gs := pageGroups(t, ctx); len(gs) != 1 || len(gs[0]) != len(wizard) {
		t.Fatalf("tier identical: %v", gs)
	}
	// The filter offers "all" and the tiers present (identical, same).
	var opts []string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.getElementById('tier').options).map(o => o.value)`, &opts)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(opts) != fmt.Sprint([]string{"", "identical", "same"}) {
		t.Fatalf("tier filter options %q", opts)
	}
	for i := 0; i < len(opts)-1; i++ {
		if err := chromedp.Run(ctx, chromedp.KeyEvent("t")); err != nil {
			t.Fatal(err)
		}
		gen = waitRender(t, ctx, gen)
	}
	if gs := pageGroups(t, ctx); len(gs) != 2 {
		t.Fatalf("back to all tiers: %v", gs)
	}

	// Folder filter: "backup" leaves the group with a photo in backup/; clearing it, both.
	for _, f := range []struct {
		folder string
		groups int
	}{{"backup", 1}, {"", 2}} {
		if err := chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`(() => { const f = document.getElementById('folder');
			f.value = %q; f.dispatchEvent(new Event('change')); })()`, f.folder), nil)); err != nil {
			t.Fatal(err)
		}
		gen = waitRender(t, ctx, gen)
		gs := pageGroups(t, ctx)
		if len(gs) != f.groups || f.folder != "" && !strings.Contains(fmt.Sprint(gs), "backup/wizard.jpg") {
			t.Fatalf("folder filter %q: %v", f.folder, gs)
		}
	}

	// Keep photos/wizard.jpg, delete the others: click its card, then the group's button.
	wg := `.group:has(.card[data-path="photos/wizard.jpg"])`
	if err := chromedp.Run(ctx,
		chromedp.Click(`.card[data-path="photos/wizard.jpg"]`, chromedp.ByQuery),
		chromedp.Click(wg+` .delete-others`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	gen = waitRender(t, ctx, gen)
	if gs := pageGroups(t, ctx); len(gs) != 1 || !strings.Contains(fmt.Sprint(gs), "shapes") {
		t.Fatalf("after delete the others: groups %v (status %q)", gs, pageStatus(t, ctx))
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "photos/wizard.jpg")); err != nil {
		t.Fatalf("the kept photo: %v", err)
	}
	var trashed []string
	filepath.WalkDir(filepath.Join(m.Dir, ".imgfs-trash"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(m.Dir, p)
			trashed = append(trashed, rel)
		}
		return nil
	})
	if len(trashed) != 3 {
		t.Fatalf("trash holds %v, want the 3 other wizard copies", trashed)
	}
	for _, p := range wizard[:3] {
		if _, err := os.Stat(filepath.Join(m.Dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s still in place: %v", p, err)
		}
		found := false
		for _, q := range trashed {
			found = found || strings.HasSuffix(q, "/"+p) && strings.HasPrefix(q, ".imgfs-trash/")
		}
		if !found {
			t.Errorf("%s not in the trash %v", p, trashed)
		}
	}
	// .similar/ no longer lists backup/ (its only photo is in the trash) nor the trash.
	waitNames(t, filepath.Join(m.Dir, ".similar"), []string{"photos"})
	if ms := similarJSON(t, m, filepath.Join(m.Dir, "photos/wizard.jpg")); len(ms) != 0 {
		t.Fatalf("photos/wizard.jpg still matches %v", ms)
	}
	// Restorable: mv back, and it is a near-duplicate again.
	if err := os.Rename(filepath.Join(m.Dir, trashed[0]), filepath.Join(m.Dir, strings.SplitN(trashed[0], "/", 3)[2])); err != nil {
		t.Fatal(err)
	}
	if ms := similarJSON(t, m, filepath.Join(m.Dir, "photos/wizard.jpg")); len(ms) != 1 {
		t.Fatalf("after restoring %s: matches %v", trashed[0], ms)
	}

	// "Not a duplicate" on the shapes group (after a reload, which also shows the restored pair).
	if err := chromedp.Run(ctx, chromedp.Evaluate(`load(true)`, nil)); err != nil {
		t.Fatal(err)
	}
	gen = waitRender(t, ctx, gen)
	if gs := pageGroups(t, ctx); len(gs) != 2 {
		t.Fatalf("after restore: %v", gs)
	}
	sg := `.group:has(.card[data-path="photos/shapes.jpg"])`
	if err := chromedp.Run(ctx, chromedp.Click(sg+` .not-dup`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	gen = waitRender(t, ctx, gen)
	if gs := pageGroups(t, ctx); len(gs) != 1 || strings.Contains(fmt.Sprint(gs), "shapes") {
		t.Fatalf("after not a duplicate: %v (status %q)", gs, pageStatus(t, ctx))
	}
	// And the pair button: the restored wizard copy is "not a duplicate of the kept one".
	var restored string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll('.card')).map(c => c.dataset.path).find(p => p !== "photos/wizard.jpg")`, &restored)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Run(ctx,
		chromedp.Click(`.card[data-path="photos/wizard.jpg"]`, chromedp.ByQuery),
		chromedp.Click(`.card[data-path="`+restored+`"] .pair-not-dup`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitRender(t, ctx, gen)
	if gs := pageGroups(t, ctx); len(gs) != 0 {
		t.Fatalf("after the pair mark: %v (status %q)", gs, pageStatus(t, ctx))
	}
	if n := len(strings.Fields(m.Imgfs(t, "similar", "--marks", m.Dir))); n != 2*4 {
		t.Fatalf("imgfs similar --marks: %d paths, want 4 pairs", n)
	}
	checkMarked := func(when string) {
		t.Helper()
		for _, p := range append(shapes, "photos/wizard.jpg") {
			if ms := similarJSON(t, m, filepath.Join(m.Dir, p)); len(ms) != 0 {
				t.Fatalf("%s: %s still matches %v", when, p, ms)
			}
		}
		// Below the mount's threshold the index itself is searched (loaded before the mount
		// returns; the graph is built in the background), so right after a mount this is the
		// check that cannot pass by being early: the marked partners are still left out.
		for _, p := range append(shapes, "photos/wizard.jpg") {
			for _, mt := range similarJSONAt(t, m, filepath.Join(m.Dir, p), "0.9") {
				rel, _ := filepath.Rel(m.Dir, mt.Path)
				if strings.Contains(rel, "shapes") || strings.Contains(rel, "wizard") {
					t.Fatalf("%s: %s matches its marked partner %s at 0.9", when, p, rel)
				}
			}
		}
		waitNames(t, filepath.Join(m.Dir, ".similar"), nil)
	}
	checkMarked("after marking")

	// The browser kept no decrypted copy: no-store, so no thumbnail bytes in its profile;
	// and imgfs review wrote nothing to its TMPDIR.
	_, th := rs.get(t, "/thumb?token="+rs.tok+"&path=photos/shapes.jpg", nil)
	if len(th) < 1000 {
		t.Fatalf("thumbnail: %d bytes", len(th))
	}
	probe := th[len(th)/2 : len(th)/2+64]
	filepath.WalkDir(profile, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, probe) {
				t.Errorf("the browser stored a thumbnail in %s", p)
			}
		}
		return nil
	})
	if ents, _ := os.ReadDir(rs.tmp); len(ents) != 0 {
		t.Errorf("imgfs review wrote to TMPDIR: %v", ents)
	}

	// Unmounting stops imgfs review.
	m.Umount()
	select {
	case <-rs.done:
	case <-time.After(30 * time.Second):
		t.Fatal("imgfs review still runs after the unmount")
	}
	if rs.err != nil {
		t.Fatalf("imgfs review after the unmount: %v", rs.err)
	}
	// Marks survive a mount with an empty cache (another device) and --reindex.
	m.Cache = m.newCacheDir()
	m.Mount()
	checkMarked("after a fresh remount")
	m.Imgfs(t, "similar", "--reindex", m.Dir)
	checkMarked("after --reindex")
	// --unmark undoes them.
	m.Imgfs(t, "similar", "--unmark", filepath.Join(m.Dir, "photos/shapes.jpg"))
	if ms := similarJSON(t, m, filepath.Join(m.Dir, "photos/shapes.jpg")); len(ms) != 2 {
		t.Fatalf("after --unmark photos/shapes.jpg: %v", ms)
	}
	waitNames(t, filepath.Join(m.Dir, ".similar"), []string{"photos"})
	// --mark from the command line: one pair.
	m.Imgfs(t, "similar", "--mark", filepath.Join(m.Dir, "photos/shapes.jpg"), filepath.Join(m.Dir, "photos/edits/shapes-resize.jpg"))
	if ms := similarJSON(t, m, filepath.Join(m.Dir, "photos/shapes.jpg")); len(ms) != 1 || !strings.HasSuffix(ms[0].Path, "shapes-recompress.jpg") {
		t.Fatalf("after --mark: %v", ms)
	}
	var marks struct {
		Marks []struct{ A, B string }
	}
	if err := json.Unmarshal([]byte(m.Imgfs(t, "similar", "--marks", "--json", m.Dir)), &marks); err != nil || len(marks.Marks) != 3 {
		t.Fatalf("marks left: %+v %v", marks, err)
	}
}

// similarJSONAt is similarJSON with --threshold.
func similarJSONAt(t *testing.T, m *Mount, path, threshold string) []similarMatch {
	t.Helper()
	out := m.Imgfs(t, "similar", "--json", "--threshold", threshold, path)
	var resp struct {
		Results []struct {
			Matches []similarMatch `json:"matches"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Results) != 1 {
		t.Fatalf("imgfs similar --json --threshold %s %s: %v\n%s", threshold, path, err, out)
	}
	return resp.Results[0].Matches
}

// addExifDate inserts an APP1 Exif segment with DateTimeOriginal right after a JPEG's SOI
// (ImageMagick cannot write one; exiftool is not installed).
func addExifDate(t *testing.T, p, date string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || len(b) < 2 || b[0] != 0xFF || b[1] != 0xD8 {
		t.Fatalf("%s: not a JPEG (%v)", p, err)
	}
	le := binary.LittleEndian
	tf := []byte("II*\x00")
	tf = le.AppendUint32(tf, 8)
	// IFD0 (at 8): one entry, the Exif IFD pointer; the Exif IFD (at 26): DateTimeOriginal.
	tf = le.AppendUint16(tf, 1)
	tf = le.AppendUint16(tf, 0x8769)
	tf = le.AppendUint16(tf, 4)
	tf = le.AppendUint32(tf, 1)
	tf = le.AppendUint32(tf, 26)
	tf = le.AppendUint32(tf, 0)
	tf = le.AppendUint16(tf, 1)
	tf = le.AppendUint16(tf, 0x9003)
	tf = le.AppendUint16(tf, 2)
	tf = le.AppendUint32(tf, 20)
	tf = le.AppendUint32(tf, 44)
	tf = le.AppendUint32(tf, 0)
	tf = append(tf, date+"\x00"...)
	seg := append([]byte("Exif\x00\x00"), tf...)
	out := []byte{0xFF, 0xD8, 0xFF, 0xE1}
	out = binary.BigEndian.AppendUint16(out, uint16(len(seg)+2))
	out = append(append(out, seg...), b[2:]...)
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
