package backendtest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// WebOrigin is a real, read-only web server on loopback holding files: the
// origin of an HTTP location or a web-download import. It serves ranges
// (http.ServeContent) and counts what it is asked for, so tests can tell
// that a reader fetched only what it needed and that nobody wrote.
type WebOrigin struct {
	*httptest.Server

	Served   atomic.Int64 // body bytes sent
	Writes   atomic.Int64 // requests other than GET and HEAD (refused with 405)
	FullGETs atomic.Int64 // GETs without a Range header

	mu    sync.Mutex
	files map[string][]byte // by URL path; guarded by mu
}

// NewWebOrigin starts an origin, closed when the test ends.
func NewWebOrigin(t testing.TB) *WebOrigin {
	o := &WebOrigin{files: map[string][]byte{}}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *WebOrigin) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		o.Writes.Add(1)
		http.Error(w, "read-only", http.StatusMethodNotAllowed)
		return
	}
	if r.Method == http.MethodGet && r.Header.Get("Range") == "" {
		o.FullGETs.Add(1)
	}
	o.mu.Lock()
	data, ok := o.files[r.URL.Path]
	o.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	// A fixed modification time, so Last-Modified and If-Range are stable.
	http.ServeContent(countingWriter{w, &o.Served}, r, "", time.Unix(1700000000, 0), bytes.NewReader(data))
}

// Put publishes data at path and returns its URL.
func (o *WebOrigin) Put(path string, data []byte) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.files[path] = data
	return o.URL + path
}

// Remove makes path answer 404.
func (o *WebOrigin) Remove(path string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.files, path)
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}
