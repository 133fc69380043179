// Package api is the REST face of glimpse: the Glance Image API v2 over the
// same lifecycle the mount uses. Handlers decode the request, call the
// lifecycle, and map errors to Glance's status codes in one place
// (errors.go).
package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/glimpse-project/glimpse/api/keystone"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/metadefs"
)

// Options configure the listener.
type Options struct {
	Logger *slog.Logger
	// AuthTokens is the path of a JSON file mapping tokens to a project
	// and roles ({"tokens": {"TOKEN": {"project": "p1", "roles":
	// ["member"]}}}). Empty: every request acts as admin.
	AuthTokens string
	// Keystone, when its URL is set, validates every X-Auth-Token with
	// Keystone instead (exclusive with AuthTokens).
	Keystone keystone.Config
	// WebDownloadAllowPrivate lets web-download imports fetch from
	// loopback, private and link-local addresses.
	WebDownloadAllowPrivate bool
	// Metrics counts requests and downloads; nil: unregistered metrics.
	Metrics *Metrics
	// Metadefs is the metadata definitions catalogue served under
	// /v2/metadefs; nil: those routes are not served.
	Metadefs *metadefs.Service
	// Timeouts: only BodyStall is the handler's; NewHTTPServer takes the
	// others.
	Timeouts Timeouts
	// TaskTimeToLive: how long a settled task of the tasks API is kept
	// (Glance's task_time_to_live); 0: 48 hours.
	TaskTimeToLive time.Duration
	// MaxUploads bounds the uploads in flight, for everyone together:
	// beyond it an upload, stage or web-download answers 503 with
	// Retry-After. 0: DefaultMaxUploads.
	MaxUploads int
}

// Server is the REST listener's handler.
type Server struct {
	svc   *lifecycle.Service
	tasks *lifecycle.Tasks  // Glance's tasks API (tasks.go)
	md    *metadefs.Service // nil: no metadefs API
	log   *slog.Logger
	mux   *http.ServeMux
	auth  authenticator // nil: no authentication, everyone is admin
	// wwwAuthenticate goes with every 401 under Keystone auth, as
	// keystonemiddleware sends it: where to get a token.
	wwwAuthenticate string
	opts            Options
	metrics         *Metrics
	rules           map[string]propRule // the image schema's rules for custom properties
	ready           atomic.Bool         // set once the whole daemon serves
	closed          chan struct{}
	uploads         *uploadSlots
}

// New returns the REST handler for svc.
func New(svc *lifecycle.Service, opts Options) (*Server, error) {
	s := &Server{svc: svc, log: opts.Logger, mux: http.NewServeMux(), md: opts.Metadefs, opts: opts, closed: make(chan struct{}), rules: schemaRules()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxUploads <= 0 {
		opts.MaxUploads = DefaultMaxUploads
		s.opts.MaxUploads = DefaultMaxUploads
	}
	s.uploads = newUploadSlots(opts.MaxUploads)
	if s.metrics = opts.Metrics; s.metrics == nil {
		s.metrics = NewMetrics(nil)
	}
	opts.Metrics = s.metrics
	auth, err := newAuthenticator(context.Background(), opts)
	if err != nil {
		return nil, err
	}
	s.auth = auth
	if opts.Keystone.URL != "" {
		s.wwwAuthenticate = fmt.Sprintf("Keystone uri=%q", opts.Keystone.URL)
	}
	s.tasks = lifecycle.NewTasks(svc, lifecycle.TasksConfig{TimeToLive: opts.TaskTimeToLive, Fetch: s.fetchForTask, Logger: s.log})
	if err := s.tasks.Recover(context.Background()); err != nil {
		return nil, err
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
	s.tasks.Close()
}

// versionAlias matches the version prefixes Glance rewrites to /v2.
var versionAlias = regexp.MustCompile(`^/v2\.[0-9]+(/|$)`)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// As Glance (oslo.middleware): the request id is always our own; a
	// well-formed one sent by the caller is logged as its global id.
	reqID := "req-" + lifecycle.NewID()
	w.Header().Set("X-Openstack-Request-Id", reqID)
	globalID := r.Header.Get("X-Openstack-Request-Id")
	if !globalRequestID.MatchString(globalID) {
		globalID = ""
	}
	if m := versionAlias.FindString(r.URL.Path); m != "" {
		r.URL.Path = "/v2" + r.URL.Path[len(m)-boolInt(m[len(m)-1] == '/'):]
		r.URL.RawPath = ""
	}
	r, info := withRequestInfo(r)
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	s.mux.ServeHTTP(sw, r)
	took := time.Since(start)
	// The mux sets r.Pattern to the route that served the request.
	s.metrics.observe(r.Pattern, sw.status, sw.bytes, took)
	attrs := []slog.Attr{
		slog.String("request_id", reqID),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", sw.status),
		slog.Int64("bytes", sw.bytes),
		slog.Duration("duration", took),
		slog.String("project", info.project),
		slog.String("remote", r.RemoteAddr),
	}
	if globalID != "" {
		attrs = append(attrs, slog.String("global_request_id", globalID))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// statusWriter remembers the status and the bytes sent for the access log
// and the metrics. It forwards ReadFrom so downloads keep the server's
// fast path (sendfile).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.bytes += n
	return n, err
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
