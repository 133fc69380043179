// Package http is a read-only store of objects that stay at HTTP(S) URLs,
// like Glance's http store: an image registered with --location keeps its
// bytes on the web server, and glimpse reads them with ranged GETs.
//
// A key is resolved against Config.BaseURL; a key that is itself an
// absolute http(s) URL is used as is (the --location case). Stat is a HEAD;
// reads go through a bounded block cache with readahead (blockcache), each
// GET conditional on the validator (ETag, else Last-Modified) seen at Open,
// so a file changed on the server gives an error, never a mix of versions.
// The server must answer Range requests (206) and give a Content-Length.
//
// Writing is refused: Create and Delete return ErrReadOnly. List reports
// nothing (a web server cannot be listed, and a store that lists nothing
// gives orphan collection nothing to remove).
package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/blockcache"
)

// ErrReadOnly is returned (wrapped) by every method that would change the
// store.
var ErrReadOnly = errors.New("the http store is read-only")

// Config says where the objects are and how to fetch them.
type Config struct {
	// BaseURL is the http or https URL that keys are resolved against
	// (a trailing "/" is implied). Empty: every key must be an absolute
	// URL.
	BaseURL string
	// Client makes the requests; nil means a client with Timeout below.
	Client *nethttp.Client
	// Timeout bounds each request, body included (30 s when 0); reads
	// have no context of their own, so this is what stops a stalled
	// server from hanging a reader.
	Timeout time.Duration
	// Block cache settings, as for the S3 store (blockcache defaults
	// when 0).
	ReadBlockSize int64
	ReadCacheSize int64
	ReadAhead     int
}

// HTTP is a backend.Backend over a web server, read-only.
type HTTP struct {
	base   *url.URL
	client *nethttp.Client
	cache  *blockcache.Cache
	ctx    context.Context
	cancel context.CancelFunc
}

var _ backend.Backend = (*HTTP)(nil)

// Open prepares the store; it does not contact the server.
func Open(cfg Config) (*HTTP, error) {
	h := &HTTP{client: cfg.Client}
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("http store: base URL: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("http store: base URL %q: want http(s)://host/...", cfg.BaseURL)
		}
		if !strings.HasSuffix(u.Path, "/") {
			u.Path += "/"
			u.RawPath = ""
		}
		h.base = u
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	if h.client == nil {
		h.client = &nethttp.Client{Timeout: timeout}
	}
	h.cache = blockcache.New(blockcache.Config{
		BlockSize: cfg.ReadBlockSize, Size: cfg.ReadCacheSize, ReadAhead: cfg.ReadAhead,
		StreamBlockTimeout: timeout,
	})
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h, nil
}

// resolve turns a key into the URL to fetch.
func (h *HTTP) resolve(key string) (string, error) {
	if strings.HasPrefix(key, "http://") || strings.HasPrefix(key, "https://") {
		u, err := url.Parse(key)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("http store: invalid URL %q", key)
		}
		return u.String(), nil
	}
	if h.base == nil {
		return "", fmt.Errorf("http store: key %q is not an http(s) URL and no base URL is set", key)
	}
	if key == "" || key == "." || key == ".." || strings.ContainsAny(key, "/\x00") {
		return "", fmt.Errorf("http store: invalid key %q", key)
	}
	return h.base.JoinPath(key).String(), nil
}

// remote is what a HEAD says about an object.
type remote struct {
	url          string
	size         int64
	etag         string // strong ETag, or ""
	acceptRanges string // the HEAD's Accept-Ranges, lower case
	lastModified string // as sent, for If-Unmodified-Since
	modTime      time.Time
}

func (h *HTTP) head(ctx context.Context, key string) (remote, error) {
	u, err := h.resolve(key)
	if err != nil {
		return remote{}, err
	}
	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodHead, u, nil)
	if err != nil {
		return remote{}, fmt.Errorf("http store: %s: %w", key, err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return remote{}, fmt.Errorf("http store: %s: %w", key, err)
	}
	resp.Body.Close()
	if err := statusError(key, resp, nethttp.StatusOK); err != nil {
		return remote{}, err
	}
	if resp.ContentLength < 0 {
		return remote{}, fmt.Errorf("http store: %s: the server gives no Content-Length", key)
	}
	r := remote{url: u, size: resp.ContentLength, lastModified: resp.Header.Get("Last-Modified"), acceptRanges: strings.ToLower(strings.TrimSpace(resp.Header.Get("Accept-Ranges")))}
	if etag := resp.Header.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		r.etag = etag // If-Match needs a strong validator
	}
	if t, err := nethttp.ParseTime(r.lastModified); err == nil {
		r.modTime = t
	}
	return r, nil
}

// statusError maps an unexpected status to an error; 404 and 410 wrap
// backend.ErrNotFound.
func statusError(key string, resp *nethttp.Response, want int) error {
	switch resp.StatusCode {
	case want:
		return nil
	case nethttp.StatusNotFound, nethttp.StatusGone:
		return fmt.Errorf("http store: %s: %s: %w", key, resp.Status, backend.ErrNotFound)
	case nethttp.StatusPreconditionFailed:
		return fmt.Errorf("http store: %s: changed on the server since it was opened (%s)", key, resp.Status)
	}
	return fmt.Errorf("http store: %s: unexpected %s", key, resp.Status)
}

// Stat implements backend.Backend with a HEAD.
func (h *HTTP) Stat(ctx context.Context, key string) (backend.Info, error) {
	r, err := h.head(ctx, key)
	if err != nil {
		return backend.Info{}, err
	}
	return backend.Info{Key: key, Size: r.size, ModTime: r.modTime}, nil
}

// Open implements backend.Backend: a HEAD, then ranged GETs on demand.
func (h *HTTP) Open(ctx context.Context, key string) (backend.Reader, error) {
	r, err := h.head(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := h.checkRanges(ctx, key, r); err != nil {
		return nil, err
	}
	rd := &reader{h: h, key: key, remote: r}
	id := r.url + "\x00" + r.etag + "\x00" + r.lastModified + "\x00" + strconv.FormatInt(r.size, 10)
	rd.Reader = h.cache.Reader(h.ctx, id, r.size, rd.get)
	rd.Reader.SetStream(rd.stream)
	return rd, nil
}

// checkRanges makes sure the server answers Range requests, as every read
// needs: a server that ignores them would send the whole object for each
// block (a REST download would stop after one block, the mount would read
// garbage or fail). A HEAD that says Accept-Ranges: bytes is believed;
// otherwise one GET of the first byte must come back 206. The body of a
// 200 is not read.
func (h *HTTP) checkRanges(ctx context.Context, key string, r remote) error {
	if r.acceptRanges == "bytes" || r.size == 0 {
		return nil
	}
	noRanges := fmt.Errorf("http store: %s: the server does not answer Range requests, which glimpse reads locations with", key)
	if r.acceptRanges == "none" {
		return noRanges
	}
	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodGet, r.url, nil)
	if err != nil {
		return fmt.Errorf("http store: %s: %w", key, err)
	}
	req.Header.Set("Range", "bytes=0-0")
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("http store: %s: %w", key, err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case nethttp.StatusPartialContent:
		return nil
	case nethttp.StatusOK:
		return noRanges
	}
	return statusError(key, resp, nethttp.StatusPartialContent)
}

// stream opens the object from off to its end (a blockcache.StreamFunc).
func (r *reader) stream(ctx context.Context, off int64) (io.ReadCloser, error) {
	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodGet, r.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	r.condition(req)
	// The client's Timeout would cut a long stream: use a client without
	// it (same transport). The cache cuts a stream that stalls for
	// Config.Timeout on one block, and the reader fetches it itself.
	client := *r.h.client
	client.Timeout = 0
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != nethttp.StatusPartialContent ||
		!strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", off)) {
		resp.Body.Close()
		return nil, statusError(r.key, resp, nethttp.StatusPartialContent)
	}
	return resp.Body, nil
}

// condition makes req fail (412) if the object changed since Open.
func (r *reader) condition(req *nethttp.Request) {
	if r.etag != "" {
		req.Header.Set("If-Match", r.etag)
	} else if r.lastModified != "" {
		req.Header.Set("If-Unmodified-Since", r.lastModified)
	}
}

type reader struct {
	*blockcache.Reader
	h   *HTTP
	key string
	remote
}

// get fills p from off with one ranged GET (a blockcache.FetchFunc).
func (r *reader) get(ctx context.Context, p []byte, off int64) error {
	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodGet, r.url, nil)
	if err != nil {
		return fmt.Errorf("http store: %s: %w", r.key, err)
	}
	end := off + int64(len(p)) - 1
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end))
	r.condition(req)
	resp, err := r.h.client.Do(req)
	if err != nil {
		return fmt.Errorf("http store: read %s: %w", r.key, err)
	}
	defer resp.Body.Close()
	var body io.Reader = resp.Body
	switch {
	case resp.StatusCode == nethttp.StatusPartialContent:
		if want := fmt.Sprintf("bytes %d-%d/", off, end); !strings.HasPrefix(resp.Header.Get("Content-Range"), want) {
			return fmt.Errorf("http store: read %s: asked for %s, got Content-Range %q", r.key, want, resp.Header.Get("Content-Range"))
		}
	case resp.StatusCode == nethttp.StatusOK && resp.ContentLength == r.size:
		// The server ignored Range: usable only by skipping ahead,
		// which is bounded by the object's size; refuse big skips.
		if off > 1<<20 {
			return fmt.Errorf("http store: read %s: the server does not answer Range requests", r.key)
		}
		if _, err := io.CopyN(io.Discard, body, off); err != nil {
			return fmt.Errorf("http store: read %s: %w", r.key, err)
		}
	default:
		return statusError(r.key, resp, nethttp.StatusPartialContent)
	}
	if _, err := io.ReadFull(body, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("http store: read %s at %d: %w", r.key, off, err)
	}
	return nil
}

// Create implements backend.Backend: the store is read-only.
func (h *HTTP) Create(ctx context.Context, key string) (backend.Writer, error) {
	return nil, fmt.Errorf("http store: create %s: %w", key, ErrReadOnly)
}

// Delete implements backend.Backend: the store is read-only, and an image's
// bytes at a URL are not glimpse's to remove.
func (h *HTTP) Delete(ctx context.Context, key string) error {
	return fmt.Errorf("http store: delete %s: %w", key, ErrReadOnly)
}

// List implements backend.Backend: it reports nothing.
func (h *HTTP) List(ctx context.Context, fn func(backend.Info) error) error { return nil }

// AbortIncomplete implements backend.Backend: nothing is ever written.
func (h *HTTP) AbortIncomplete(ctx context.Context) error { return nil }

// AbortStale implements backend.Backend: nothing is ever written.
func (h *HTTP) AbortStale(ctx context.Context, live func(string) bool) error { return nil }

// Close implements backend.Backend: reads in flight fail.
func (h *HTTP) Close() error {
	h.cancel()
	h.client.CloseIdleConnections()
	return nil
}
