// Package review is the server of `imgfs review`: a local web page that shows the
// near-duplicate groups of a mounted vault with thumbnails and lets the user keep one photo
// and move the others to the vault's trash, or mark photos "not a duplicate"
// (docs/review.md).
//
// It runs in the `imgfs review` process, not in the mount daemon: it reads photos through
// the mount (os.Root, so no path escapes it) and asks the daemon for pairs and marks over
// the control socket. Thumbnails are made in memory and cached only in memory; every
// response says no-store, so the browser keeps no decrypted copy either.
//
// Security (docs/review.md, "Security"): it listens on 127.0.0.1 only; every request must
// carry the random token (URL, then an HttpOnly SameSite=Strict cookie); a Host other than
// 127.0.0.1:PORT or localhost:PORT (DNS rebinding) and an Origin or Sec-Fetch-Site of
// another site are refused; changes are POSTs that must also carry the token in a header.
package review

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imgfs/imgfs/fs/similar"
)

//go:embed assets
var assets embed.FS

var pageTmpl = template.Must(template.ParseFS(assets, "assets/index.html"))

// Backend is what the server needs of the mount's daemon.
type Backend interface {
	// Pairs returns every near-duplicate pair at the mount's threshold, and the indexing
	// backlog.
	Pairs(ctx context.Context) ([]similar.PairOut, int, error)
	// Mark records "not a duplicate" for each pair and returns how many marks are new.
	Mark(ctx context.Context, pairs []similar.PairRef) (int, error)
}

// Config configures a Server.
type Config struct {
	Mount   string // absolute mountpoint
	Backend Backend
	Logger  *slog.Logger
	// PageSize is the number of groups per page (0: 20).
	PageSize int
	// ThumbCacheBytes bounds the in-memory thumbnail cache (0: 64 MiB).
	ThumbCacheBytes int
}

// Server serves the review page of one mount.
type Server struct {
	cfg    Config
	token  string
	port   int
	thumbs *thumbCache
	sem    chan struct{} // bounds concurrent decodes and header reads

	mu      sync.Mutex
	groups  []Group
	folders []string
	backlog int
	at      time.Time
}

// groupsTTL is how long a computed group list is reused before the daemon is asked again
// (actions of this page refresh it at once).
const groupsTTL = 3 * time.Second

// maxPairsPerMark bounds one "not a duplicate" request.
const maxPairsPerMark = 10000

// New opens the mount for reading and makes a random token.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("review: no backend")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 20
	}
	if cfg.ThumbCacheBytes <= 0 {
		cfg.ThumbCacheBytes = 64 << 20
	}
	root, err := os.OpenRoot(cfg.Mount)
	if err != nil {
		return nil, err
	}
	root.Close()
	var tok [24]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, token: hex.EncodeToString(tok[:]),
		thumbs: newThumbCache(cfg.ThumbCacheBytes), sem: make(chan struct{}, 4)}, nil
}

// Token is the secret every request must carry.
func (s *Server) Token() string { return s.token }

// Listen binds 127.0.0.1 on a random port.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	return ln, nil
}

// URL is the address to open (with the token), once Listen returned.
func (s *Server) URL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/?token=%s", s.port, s.token)
}

// Serve serves on ln until ctx ends, then shuts down (waiting up to 5 s for requests).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-done
	return err
}

// openRoot opens the mount for one request. The server holds no descriptor inside the
// mount between requests, so the user can unmount it (which then stops imgfs review).
func (s *Server) openRoot() (*os.Root, error) { return os.OpenRoot(s.cfg.Mount) }

// Handler is the server's routes behind the security checks.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /static/{name}", s.static)
	mux.HandleFunc("GET /api/groups", s.apiGroups)
	mux.HandleFunc("GET /thumb", s.thumb)
	mux.HandleFunc("POST /api/delete", s.apiDelete)
	mux.HandleFunc("POST /api/notdup", s.apiNotDup)
	return s.guard(mux)
}

func (s *Server) cookieName() string { return "imgfs-review-" + strconv.Itoa(s.port) }

func (s *Server) hostOK(h string) bool {
	p := ":" + strconv.Itoa(s.port)
	return h == "127.0.0.1"+p || h == "localhost"+p
}

func (s *Server) tokenOK(t string) bool {
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

// guard sets the security headers and refuses foreign or unauthenticated requests.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "+
			"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !s.hostOK(r.Host) {
			http.Error(w, "wrong Host (imgfs review answers only 127.0.0.1 and localhost)", http.StatusForbidden)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !(strings.HasPrefix(o, "http://") && s.hostOK(o[len("http://"):])) {
			http.Error(w, "foreign Origin", http.StatusForbidden)
			return
		}
		if sf := r.Header.Get("Sec-Fetch-Site"); sf != "" && sf != "same-origin" && sf != "none" {
			http.Error(w, "cross-site request", http.StatusForbidden)
			return
		}
		fromURL := s.tokenOK(r.URL.Query().Get("token"))
		ok := fromURL || s.tokenOK(r.Header.Get("X-Imgfs-Token"))
		if c, err := r.Cookie(s.cookieName()); err == nil && s.tokenOK(c.Value) {
			ok = true
		}
		if !ok {
			http.Error(w, "missing or wrong token: open the URL imgfs review printed", http.StatusForbidden)
			return
		}
		if r.Method == http.MethodPost && !s.tokenOK(r.Header.Get("X-Imgfs-Token")) {
			// Changes need the token in a header, which a cross-site form cannot set.
			http.Error(w, "missing X-Imgfs-Token header", http.StatusForbidden)
			return
		}
		if fromURL {
			http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: s.token, Path: "/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode})
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	pageTmpl.Execute(w, map[string]any{"Token": s.token, "Mount": s.cfg.Mount})
}

func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	b, err := assets.ReadFile("assets/" + name)
	if err != nil || name == "index.html" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", mime.TypeByExtension(path.Ext(name)))
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// load returns the groups, asking the daemon when the cached list is older than groupsTTL.
func (s *Server) load(ctx context.Context, fresh bool) ([]Group, []string, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups != nil && !fresh && time.Since(s.at) < groupsTTL {
		return s.groups, s.folders, s.backlog, nil
	}
	pairs, backlog, err := s.cfg.Backend.Pairs(ctx)
	if err != nil {
		return nil, nil, 0, err
	}
	s.groups = Groups(pairs)
	s.folders = Folders(s.groups)
	s.backlog = backlog
	s.at = time.Now()
	return s.groups, s.folders, s.backlog, nil
}

func (s *Server) invalidate() {
	s.mu.Lock()
	s.at = time.Time{}
	s.mu.Unlock()
}

// GroupsPage is the answer of /api/groups.
type GroupsPage struct {
	Groups  []Group  `json:"groups"`
	Total   int      `json:"total"`   // groups matching the filter
	All     int      `json:"all"`     // groups of the vault
	Page    int      `json:"page"`    // 0-based
	Pages   int      `json:"pages"`   // at least 1
	Size    int      `json:"size"`    // groups per page
	Folders []string `json:"folders"` // folders holding a group member
	Tiers   []string `json:"tiers"`   // tiers of the vault's groups, best first
	Backlog int      `json:"backlog"` // files still being indexed
}

func (s *Server) apiGroups(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tier := q.Get("tier") // any tier the index reports (fs/similar.Tier); unknown ones match nothing
	page, _ := strconv.Atoi(q.Get("page"))
	all, folders, backlog, err := s.load(r.Context(), q.Get("fresh") == "1")
	if err != nil {
		jsonError(w, http.StatusBadGateway, "asking the mount's daemon: "+err.Error())
		return
	}
	gs := Filter(all, tier, q.Get("folder"))
	size := s.cfg.PageSize
	pages := max(1, (len(gs)+size-1)/size)
	page = min(max(page, 0), pages-1)
	lo, hi := page*size, min((page+1)*size, len(gs))
	out := GroupsPage{Total: len(gs), All: len(all), Page: page, Pages: pages, Size: size, Folders: folders, Tiers: Tiers(all), Backlog: backlog,
		Groups: make([]Group, 0, hi-lo)}
	for _, g := range gs[lo:hi] {
		g.Members = append([]Member(nil), g.Members...)
		out.Groups = append(out.Groups, g)
	}
	s.fillInfo(out.Groups)
	writeJSON(w, out)
}

// fillInfo reads size, dimensions and date of the members of one page (in parallel), and
// orders each group's members largest first (the likely original: the page's default keep).
func (s *Server) fillInfo(gs []Group) {
	root, err := s.openRoot()
	if err != nil {
		for gi := range gs {
			for mi := range gs[gi].Members {
				gs[gi].Members[mi].Error = cleanErr(err)
			}
		}
		return
	}
	defer root.Close()
	var wg sync.WaitGroup
	for gi := range gs {
		for mi := range gs[gi].Members {
			m := &gs[gi].Members[mi]
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.sem <- struct{}{}
				defer func() { <-s.sem }()
				m.Info = readInfo(root, m.Path)
			}()
		}
	}
	wg.Wait()
	for _, g := range gs {
		sort.SliceStable(g.Members, func(i, j int) bool {
			a, b := g.Members[i], g.Members[j]
			if pa, pb := a.Width*a.Height, b.Width*b.Height; pa != pb {
				return pa > pb
			}
			if a.Size != b.Size {
				return a.Size > b.Size
			}
			return a.Path < b.Path
		})
	}
}

// validRel checks a slash path from the mount root that the page may name.
func validRel(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("bad path %q", p)
	}
	top := strings.SplitN(p, "/", 2)[0]
	if top == ".similar" || top == similar.TrashDir {
		return fmt.Errorf("bad path %q: inside %s", p, top)
	}
	return nil
}

func (s *Server) thumb(w http.ResponseWriter, r *http.Request) {
	rel := r.URL.Query().Get("path")
	if err := validRel(rel); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	root, err := s.openRoot()
	if err != nil {
		http.Error(w, cleanErr(err), http.StatusServiceUnavailable)
		return
	}
	defer root.Close()
	st, err := root.Stat(rel)
	if err != nil {
		http.Error(w, cleanErr(err), http.StatusNotFound)
		return
	}
	k := thumbKey{rel, st.Size(), st.ModTime()}
	b, ok := s.thumbs.get(k)
	if !ok {
		select {
		case s.sem <- struct{}{}:
		case <-r.Context().Done():
			return // scrolled away: the browser cancelled the lazy load
		}
		b, err = makeThumb(root, rel)
		<-s.sem
		if err != nil {
			http.Error(w, "no thumbnail: "+cleanErr(err), http.StatusUnsupportedMediaType)
			return
		}
		s.thumbs.put(k, b)
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
}

func readJSON(r *http.Request, v any) error {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return errors.New("want Content-Type application/json")
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 8<<20))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// DeleteRequest keeps one photo and moves the others to the trash.
type DeleteRequest struct {
	Keep   string   `json:"keep"`
	Delete []string `json:"delete"`
}

// Moved is one file moved to the trash.
type Moved struct {
	From string `json:"from"`
	To   string `json:"to"`
}

func (s *Server) apiDelete(w http.ResponseWriter, r *http.Request) {
	var req DeleteRequest
	if err := readJSON(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(req.Delete) == 0 {
		jsonError(w, http.StatusBadRequest, "nothing to delete")
		return
	}
	for _, p := range append([]string{req.Keep}, req.Delete...) {
		if err := validRel(p); err != nil {
			jsonError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	root, err := s.openRoot()
	if err != nil {
		jsonError(w, http.StatusServiceUnavailable, cleanErr(err))
		return
	}
	defer root.Close()
	// The kept photo must be there: deleting "the others" must never leave none.
	if st, err := root.Lstat(req.Keep); err != nil || !st.Mode().IsRegular() {
		jsonError(w, http.StatusConflict, "the photo to keep is not there any more: "+req.Keep)
		return
	}
	for _, p := range req.Delete {
		if p == req.Keep {
			jsonError(w, http.StatusBadRequest, "the kept photo is also in the delete list")
			return
		}
	}
	moved, err := moveToTrash(root, req.Delete, time.Now())
	s.invalidate()
	if err != nil {
		s.cfg.Logger.Warn("review: move to trash", "err", err)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "moved": moved})
		return
	}
	writeJSON(w, map[string]any{"moved": moved})
}

// NotDupRequest marks pairs "not a duplicate".
type NotDupRequest struct {
	Pairs []similar.PairRef `json:"pairs"`
}

func (s *Server) apiNotDup(w http.ResponseWriter, r *http.Request) {
	var req NotDupRequest
	if err := readJSON(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(req.Pairs) == 0 || len(req.Pairs) > maxPairsPerMark {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("want 1 to %d pairs", maxPairsPerMark))
		return
	}
	for _, p := range req.Pairs {
		for _, q := range []string{p.A, p.B} {
			if err := validRel(q); err != nil {
				jsonError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
	}
	n, err := s.cfg.Backend.Mark(r.Context(), req.Pairs)
	s.invalidate()
	if err != nil {
		jsonError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, map[string]int{"changed": n})
}
