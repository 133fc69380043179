package api

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// Timeouts bound how long a slow or stalled client may hold a connection
// and, through it, an upload. Zero leaves a bound off.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers (slowloris).
	ReadHeader time.Duration
	// Idle bounds how long a kept-alive connection waits for its next
	// request.
	Idle time.Duration
	// BodyStall bounds the wait for the next bytes of a request body: an
	// upload whose client sends nothing for this long fails (the image is
	// killed with the reason) and the connection is closed. Unlike a
	// whole-request timeout it never cuts a large upload that keeps
	// moving.
	BodyStall time.Duration
}

// DefaultTimeouts are the daemon's defaults: generous for people on slow
// links, short enough that stalled clients do not pile up.
var DefaultTimeouts = Timeouts{ReadHeader: 30 * time.Second, Idle: 2 * time.Minute, BodyStall: 2 * time.Minute}

// NewHTTPServer returns the http.Server for handler with t's header and
// idle bounds (the body bound is the handler's: Options.Timeouts).
func NewHTTPServer(handler http.Handler, t Timeouts) *http.Server {
	return &http.Server{Handler: handler, ReadHeaderTimeout: t.ReadHeader, IdleTimeout: t.Idle}
}

// stallReader is a request body that must make progress: before each read
// it moves the connection's read deadline to BodyStall from now.
type stallReader struct {
	body  io.ReadCloser
	rc    *http.ResponseController
	stall time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	if err := s.rc.SetReadDeadline(time.Now().Add(s.stall)); err != nil {
		return s.body.Read(p) // a connection without deadlines: read unbounded
	}
	n, err := s.body.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, errorf(http.StatusRequestTimeout, "The client sent no data for %s: request abandoned.", s.stall)
	}
	return n, err
}

func (s *stallReader) Close() error { return s.body.Close() }

// guardBody makes r's body a stallReader when a body bound is set, and
// returns the body as it was (a refused request is drained through it,
// under the drain's own bounds).
func (s *Server) guardBody(w http.ResponseWriter, r *http.Request) io.ReadCloser {
	orig := r.Body
	if s.opts.Timeouts.BodyStall > 0 && r.Body != nil && r.Body != http.NoBody {
		r.Body = &stallReader{body: r.Body, rc: http.NewResponseController(w), stall: s.opts.Timeouts.BodyStall}
	}
	return orig
}
