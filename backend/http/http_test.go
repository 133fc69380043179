package http_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	httpstore "github.com/glimpse-project/glimpse/backend/http"
)

// serve writes objects as real files and serves them with net/http's file
// server (Range, HEAD, Last-Modified, If-Unmodified-Since), wrapped by mw.
func serve(t *testing.T, objects map[string][]byte, mw func(nethttp.Handler) nethttp.Handler) *httptest.Server {
	t.Helper()
	dir := t.TempDir()
	for k, v := range objects {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var h nethttp.Handler = nethttp.FileServer(nethttp.Dir(dir))
	if mw != nil {
		h = mw(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func open(t *testing.T, cfg httpstore.Config) *httpstore.HTTP {
	t.Helper()
	h, err := httpstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestConformanceRead(t *testing.T) {
	backendtest.RunRead(t, func(t *testing.T, objects map[string][]byte) backend.Backend {
		srv := serve(t, objects, func(h nethttp.Handler) nethttp.Handler {
			return nethttp.StripPrefix("/images", h)
		})
		return open(t, httpstore.Config{BaseURL: srv.URL + "/images", ReadBlockSize: 1 << 20})
	})
}

// With ETags, reads are conditional on them (If-Match).
func TestConformanceReadETag(t *testing.T) {
	backendtest.RunRead(t, func(t *testing.T, objects map[string][]byte) backend.Backend {
		srv := serve(t, objects, func(h nethttp.Handler) nethttp.Handler {
			return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
				w.Header().Set("ETag", fmt.Sprintf("%q", strings.TrimPrefix(r.URL.Path, "/")))
				h.ServeHTTP(w, r)
			})
		})
		return open(t, httpstore.Config{BaseURL: srv.URL})
	})
}

func TestReadOnly(t *testing.T) {
	srv := serve(t, map[string][]byte{"a": []byte("a")}, nil)
	h := open(t, httpstore.Config{BaseURL: srv.URL})
	ctx := context.Background()
	if _, err := h.Create(ctx, "b"); !errors.Is(err, httpstore.ErrReadOnly) {
		t.Fatalf("create: %v, want ErrReadOnly", err)
	}
	if err := h.Delete(ctx, "a"); !errors.Is(err, httpstore.ErrReadOnly) {
		t.Fatalf("delete: %v, want ErrReadOnly", err)
	}
	n := 0
	if err := h.List(ctx, func(backend.Info) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("list: %d objects, %v", n, err)
	}
	if err := h.AbortIncomplete(ctx); err != nil {
		t.Fatal(err)
	}
}

// An absolute URL is a key too: the --location case, with no base URL.
func TestAbsoluteURL(t *testing.T) {
	srv := serve(t, map[string][]byte{"disk.img": []byte("bytes at a URL")}, nil)
	h := open(t, httpstore.Config{})
	got, err := backendtest.Get(context.Background(), h, srv.URL+"/disk.img")
	if err != nil || string(got) != "bytes at a URL" {
		t.Fatalf("get: %q %v", got, err)
	}
	if _, err := h.Stat(context.Background(), "disk.img"); err == nil {
		t.Fatal("a relative key without a base URL was accepted")
	}
}

// A file changed on the server after Open fails the read instead of
// mixing versions.
func TestChangedOnServer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "img")
	os.WriteFile(path, []byte("version one"), 0o644)
	srv := httptest.NewServer(nethttp.FileServer(nethttp.Dir(dir)))
	defer srv.Close()
	h := open(t, httpstore.Config{BaseURL: srv.URL})
	r, err := h.Open(context.Background(), "img")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte("version two"), 0o644)
	later := time.Now().Add(time.Hour)
	os.Chtimes(path, later, later)
	if n, err := r.ReadAt(make([]byte, 4), 0); err == nil {
		t.Fatalf("read of a changed file succeeded (%d bytes)", n)
	}
}

// A server that ignores Range would make every read a whole download (or
// a wrong one): the store refuses to open its objects, after one GET of a
// byte whose body it does not read; a server that answers ranges without
// saying Accept-Ranges is fine.
func TestNoRangeSupport(t *testing.T) {
	data := make([]byte, 3<<20)
	var gets atomic.Int64
	var ranged atomic.Bool
	ranged.Store(true)
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.Method == nethttp.MethodGet {
			gets.Add(1)
		}
		if ranged.Load() && r.Header.Get("Range") == "bytes=0-0" {
			// Answers ranges, without saying Accept-Ranges.
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-0/%d", len(data)))
			w.Header().Set("Content-Length", "1")
			w.WriteHeader(nethttp.StatusPartialContent)
			w.Write(data[:1])
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		if r.Method == nethttp.MethodGet {
			w.Write(data)
		}
	}))
	defer srv.Close()
	h := open(t, httpstore.Config{BaseURL: srv.URL, ReadBlockSize: 1 << 20, ReadAhead: -1})
	r, err := h.Open(context.Background(), "x")
	if err != nil {
		t.Fatalf("open on a server that answers ranges without Accept-Ranges: %v", err)
	}
	r.Close()
	ranged.Store(false)
	gets.Store(0)
	if _, err := h.Open(context.Background(), "x"); err == nil || !strings.Contains(err.Error(), "Range") {
		t.Fatalf("open on a server that ignores Range: %v", err)
	}
	if n := gets.Load(); n != 1 {
		t.Fatalf("%d GETs to find out, want 1", n)
	}
}

// Faults: the server gone (connection refused) and a server that stalls.
// Neither is reported as a missing object, and a stall ends at the timeout.
func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h := open(t, httpstore.Config{BaseURL: "http://" + addr})
	_, err = h.Stat(context.Background(), "x")
	if err == nil || errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat with no server: %v, want a connection error", err)
	}
	if _, err := h.Open(context.Background(), "x"); err == nil || errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("open with no server: %v, want a connection error", err)
	}
}

func TestServerGoneAfterOpen(t *testing.T) {
	srv := serve(t, map[string][]byte{"a": make([]byte, 100)}, nil)
	h := open(t, httpstore.Config{BaseURL: srv.URL})
	r, err := h.Open(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections()
	srv.Close()
	if _, err := r.ReadAt(make([]byte, 10), 0); err == nil || errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("read with the server gone: %v", err)
	}
}

func TestSlowServer(t *testing.T) {
	var stall atomic.Bool
	release := make(chan struct{})
	srv := serve(t, map[string][]byte{"a": make([]byte, 100)}, func(h nethttp.Handler) nethttp.Handler {
		return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
			if stall.Load() {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	defer close(release)
	h := open(t, httpstore.Config{BaseURL: srv.URL, Timeout: 300 * time.Millisecond})
	r, err := h.Open(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	stall.Store(true)
	start := time.Now()
	_, err = r.ReadAt(make([]byte, 10), 0)
	if err == nil {
		t.Fatal("read from a stalled server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("read gave up after %v, want about the 300 ms timeout", d)
	}
	stall.Store(false)
	if _, err := r.ReadAt(make([]byte, 10), 0); err != nil {
		t.Fatalf("read once the server answers again: %v", err)
	}
}
