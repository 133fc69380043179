// Package api is the REST face of glimpse: the Glance Image API v2 over the
// same lifecycle the mount uses. Handlers decode the request, call the
// lifecycle, and map errors to Glance's status codes in one place
// (errors.go).
package api

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/glimpse-project/glimpse/lifecycle"
)

// Options configure the listener.
type Options struct {
	Logger *slog.Logger
	// AuthTokens is the path of a JSON file mapping tokens to a project
	// and roles ({"tokens": {"TOKEN": {"project": "p1", "roles":
	// ["member"]}}}). Empty: every request acts as admin.
	AuthTokens string
	// WebDownloadAllowPrivate lets web-download imports fetch from
	// loopback, private and link-local addresses.
	WebDownloadAllowPrivate bool
	// Timeouts: only BodyStall is the handler's; NewHTTPServer takes the
	// others.
	Timeouts Timeouts
}

// Server is the REST listener's handler.
type Server struct {
	svc    *lifecycle.Service
	log    *slog.Logger
	mux    *http.ServeMux
	auth   *tokens // nil: no authentication, everyone is admin
	opts   Options
	rules  map[string]propRule // the image schema's rules for custom properties
	ready  atomic.Bool         // set once the whole daemon serves
	closed chan struct{}
}

// New returns the REST handler for svc.
func New(svc *lifecycle.Service, opts Options) (*Server, error) {
	s := &Server{svc: svc, log: opts.Logger, mux: http.NewServeMux(), opts: opts, closed: make(chan struct{}), rules: schemaRules()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.AuthTokens != "" {
		t, err := loadTokens(opts.AuthTokens)
		if err != nil {
			return nil, fmt.Errorf("--auth-tokens: %w", err)
		}
		s.auth = t
	}
	s.routes()
	return s, nil
}

// SetReady marks the daemon ready (or not): /healthcheck answers 200 only
// when it is.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Close stops background work (imports in progress are told to stop).
func (s *Server) Close() {
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
}

// versionAlias matches the version prefixes Glance rewrites to /v2.
var versionAlias = regexp.MustCompile(`^/v2\.[0-9]+(/|$)`)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := "req-" + lifecycle.NewID()
	w.Header().Set("X-Openstack-Request-Id", reqID)
	if m := versionAlias.FindString(r.URL.Path); m != "" {
		r.URL.Path = "/v2" + r.URL.Path[len(m)-boolInt(m[len(m)-1] == '/'):]
		r.URL.RawPath = ""
	}
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	s.mux.ServeHTTP(sw, r)
	s.log.Debug("request", "id", reqID, "method", r.Method, "path", r.URL.Path, "status", sw.status, "duration", time.Since(start))
}

// statusWriter remembers the status for the access log. It forwards
// ReadFrom so downloads keep the server's fast path.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *Server) healthcheck(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("starting\n"))
		return
	}
	w.Write([]byte("OK\n"))
}
