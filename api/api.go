// Package api is the REST face of glimpse: the Glance Image API v2 over the
// same lifecycle the mount uses. Handlers decode the request, call the
// lifecycle, and map errors to Glance's status codes in one place.
package api

import (
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/glimpse-project/glimpse/lifecycle"
)

// Options configure the listener.
type Options struct {
	Logger *slog.Logger
}

// Server is the REST listener's handler.
type Server struct {
	svc   *lifecycle.Service
	log   *slog.Logger
	mux   *http.ServeMux
	ready atomic.Bool // set once the whole daemon serves
}

// New returns the REST handler for svc.
func New(svc *lifecycle.Service, opts Options) *Server {
	s := &Server{svc: svc, log: opts.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mux.HandleFunc("GET /healthcheck", s.healthcheck)
	return s
}

// SetReady marks the daemon ready (or not): /healthcheck answers 200 only
// when it is.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) healthcheck(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("starting\n"))
		return
	}
	w.Write([]byte("OK\n"))
}
