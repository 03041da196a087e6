package faulty

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ProxyConfig sets the share of requests each fault hits (each in [0,1]; their sum at most
// 1; a request gets at most one fault). Requests are matched on method (Methods empty: all).
type ProxyConfig struct {
	Fail     float64       // answer 503 SlowDown without forwarding
	Reset    float64       // reset the client connection without forwarding
	Delay    float64       // forward after DelayFor
	DelayFor time.Duration // default 2s
	Truncate float64       // forward, then cut the response body halfway and drop the connection
	LostAck  float64       // forward, then reset the client connection instead of answering
	Methods  []string
	Seed     uint64
	// RecordHeads keeps the request line and headers of every request (Heads), for leak
	// scans of what reaches the wire besides the bodies (T1, T2 in docs/security-tests.md).
	RecordHeads bool
	// StripConditions removes If-None-Match and If-Match from PUTs, as a store that ignores
	// conditional writes would (the store probe's negative control). The headers are signed,
	// so Resign must sign the request again (with the client's credentials).
	StripConditions bool
	Resign          func(*http.Request) *http.Request
}

// Action is what the proxy did to one request.
type Action string

// The actions, as counted by Proxy.Count.
const (
	ActForward  Action = "forward"
	ActFail     Action = "fail"
	ActReset    Action = "reset"
	ActDelay    Action = "delay"
	ActTruncate Action = "truncate"
	ActLostAck  Action = "lostack"
	ActDown     Action = "down"
)

// Proxy is a fault-injecting HTTP reverse proxy on 127.0.0.1 in front of one S3 server.
// Clients sign requests for the proxy's address; the proxy keeps the Host header so the
// signature still verifies upstream.
type Proxy struct {
	Addr   string // 127.0.0.1:PORT the clients use
	target string
	srv    *http.Server
	ln     net.Listener
	tr     *http.Transport

	mu     sync.Mutex
	cfg    ProxyConfig
	rnd    *rand.Rand
	counts map[Action]int
	log    []string // "METHOD /path?query" of every request, in arrival order
	heads  []byte   // request lines and headers (cfg.RecordHeads)
	down   atomic.Bool
}

// StartProxy listens on a free loopback port and forwards to target (host:port).
func StartProxy(target string, cfg ProxyConfig) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		Addr:   ln.Addr().String(),
		target: target,
		ln:     ln,
		tr:     &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
		counts: map[Action]int{},
	}
	p.Configure(cfg)
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

// Configure replaces the fault shares (e.g. to let the store recover).
func (p *Proxy) Configure(cfg ProxyConfig) {
	if cfg.DelayFor == 0 {
		cfg.DelayFor = 2 * time.Second
	}
	p.mu.Lock()
	p.cfg = cfg
	p.rnd = rand.New(rand.NewPCG(cfg.Seed, 0x1a2b3c))
	p.mu.Unlock()
}

// SetDown makes every request fail with a reset (a store that is down) until SetDown(false).
func (p *Proxy) SetDown(down bool) { p.down.Store(down) }

// Count returns how many requests got action a.
func (p *Proxy) Count(a Action) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[a]
}

// Counts returns a copy of all counters.
func (p *Proxy) Counts() map[Action]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[Action]int{}
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Requests returns "METHOD /path?query" of every request since the last ResetRequests, in
// arrival order (T9 compares the requests two workloads make).
func (p *Proxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// Heads returns the request lines and headers recorded while RecordHeads was set.
func (p *Proxy) Heads() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.heads)
}

// ResetRequests empties the request log.
func (p *Proxy) ResetRequests() {
	p.mu.Lock()
	p.log = nil
	p.mu.Unlock()
}

// Close stops the proxy.
func (p *Proxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	if err != nil {
		p.srv.Close()
	}
	p.tr.CloseIdleConnections()
	return nil
}

func (p *Proxy) pick(r *http.Request) Action {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := ActForward
	if p.down.Load() {
		a = ActDown
	} else if len(p.cfg.Methods) == 0 || contains(p.cfg.Methods, r.Method) {
		x := p.rnd.Float64()
		for _, c := range []struct {
			share float64
			act   Action
		}{{p.cfg.Fail, ActFail}, {p.cfg.Reset, ActReset}, {p.cfg.Delay, ActDelay}, {p.cfg.Truncate, ActTruncate}, {p.cfg.LostAck, ActLostAck}} {
			if x < c.share {
				a = c.act
				break
			}
			x -= c.share
		}
	}
	p.counts[a]++
	p.log = append(p.log, r.Method+" "+r.URL.RequestURI())
	if p.cfg.RecordHeads {
		p.heads = fmt.Appendf(p.heads, "%s %s %s\r\nHost: %s\r\n", r.Method, r.URL.RequestURI(), r.Proto, r.Host)
		var b bytes.Buffer
		r.Header.Write(&b)
		p.heads = append(append(p.heads, b.Bytes()...), "\r\n"...)
	}
	return a
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch act := p.pick(r); act {
	case ActDown, ActReset:
		reset(w)
		return
	case ActFail:
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected by faulty.Proxy</Message></Error>`)
		return
	case ActDelay:
		t := time.NewTimer(p.cfg.DelayFor)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
		p.forward(w, r, ActForward)
	default:
		p.forward(w, r, act)
	}
}

// reset drops the client connection with a TCP RST.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, act Action) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = "http"
	out.URL.Host = p.target
	out.Host = r.Host // signed by the client
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if r.ContentLength == 0 {
		out.Body = nil
	}
	p.mu.Lock()
	strip, resign := p.cfg.StripConditions, p.cfg.Resign
	p.mu.Unlock()
	if strip && r.Method == http.MethodPut && (out.Header.Get("If-None-Match") != "" || out.Header.Get("If-Match") != "") {
		out.Header.Del("If-None-Match")
		out.Header.Del("If-Match")
		if resign != nil {
			out = resign(out)
		}
	}
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return
		}
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if act == ActLostAck {
		io.Copy(io.Discard, resp.Body)
		reset(w)
		return
	}
	for k, v := range resp.Header {
		if !contains(hopHeaders, k) {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	if act == ActTruncate && resp.ContentLength > 1 && r.Method != http.MethodHead {
		io.CopyN(w, resp.Body, resp.ContentLength/2)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		reset(w)
		return
	}
	if act == ActTruncate && !strings.EqualFold(r.Method, http.MethodHead) && resp.ContentLength <= 1 {
		reset(w) // nothing to cut: drop the answer instead
		return
	}
	io.Copy(w, resp.Body)
}
