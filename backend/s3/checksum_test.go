package s3_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/glimpse-project/glimpse/backend"
)

// corruptingProxy forwards to a MinIO and, while armed, flips one byte of
// every request body it forwards: the bit rot or bad NIC that a payload
// checksum exists for, which a real server cannot be made to produce.
type corruptingProxy struct {
	addr  string
	armed atomic.Bool

	mu     sync.Mutex
	shaHdr map[string]bool // X-Amz-Content-Sha256 values of the PUTs seen
}

func newCorruptingProxy(t *testing.T, target string) *corruptingProxy {
	t.Helper()
	p := &corruptingProxy{shaHdr: map[string]bool{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.ErrorLog = log.New(io.Discard, "", 0) // the armed proxy's aborted requests
	next := rp.Director
	rp.Director = func(r *http.Request) {
		next(r) // the Host header stays the proxy's: the one that was signed
		if r.Method != http.MethodPut || r.Body == nil {
			return
		}
		p.mu.Lock()
		p.shaHdr[r.Header.Get("X-Amz-Content-Sha256")] = true
		p.mu.Unlock()
		if p.armed.Load() {
			r.Body = &flipAt{r: r.Body, at: 200}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	p.addr = l.Addr().String()
	return p
}

func (p *corruptingProxy) sawSha(v string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shaHdr[v]
}

// flipAt inverts the byte at offset at of the stream. At 200 it lands in
// the data of every body the store sends: a raw part, or the first chunk
// of an aws-chunked body (its header is under 100 bytes).
type flipAt struct {
	r   io.ReadCloser
	off int64
	at  int64
}

func (f *flipAt) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if i := f.at - f.off; i >= 0 && i < int64(n) {
		b[i] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}

func (f *flipAt) Close() error { return f.r.Close() }

// A byte changed on the way to the server fails the upload, small (one
// PUT) or large (multipart), with the default unsigned payloads (the
// server checks the CRC32C that goes with each part) as with signed ones;
// and the default never pays for SHA-256 streaming signatures.
func TestCorruptedPayloadRefused(t *testing.T) {
	m := sharedMinio(t)
	for _, c := range []struct {
		name string
		sign bool
	}{{"crc32c", false}, {"signed", true}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			proxy := newCorruptingProxy(t, m.addr)
			cfg := config(m)
			cfg.Endpoint, cfg.SignPayload = proxy.addr, c.sign
			s := open(t, cfg)
			for _, size := range []int{1 << 10, 3 * testPart} {
				// Unarmed, the proxy passes the bytes on intact.
				w, err := s.Create(ctx, "good")
				if err != nil {
					t.Fatal(err)
				}
				if err := writeN(w, size); err != nil {
					t.Fatal(err)
				}
				if err := w.Commit(ctx); err != nil {
					t.Fatalf("%d bytes through the unarmed proxy: %v", size, err)
				}

				proxy.armed.Store(true)
				w, err = s.Create(ctx, "bad")
				if err != nil {
					t.Fatal(err)
				}
				err = writeN(w, size)
				if err == nil {
					err = w.Commit(ctx)
				}
				w.Abort(ctx)
				proxy.armed.Store(false)
				if err == nil {
					t.Fatalf("%d bytes with a flipped byte: committed", size)
				}
				t.Logf("%d bytes with a flipped byte: %v", size, err)
				if _, err := s.Stat(ctx, "bad"); !errors.Is(err, backend.ErrNotFound) {
					t.Fatalf("the corrupted object: stat %v, want not found", err)
				}
			}
			signed := proxy.sawSha("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
			if signed != c.sign {
				t.Errorf("streaming-signed PUTs seen: %v, want %v", signed, c.sign)
			}
		})
	}
}
