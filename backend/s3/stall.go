package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// DefaultStallTimeout is how long a request may make no progress before it
// fails (Config.StallTimeout).
const DefaultStallTimeout = 60 * time.Second

// errStalled is the cause of an operation stopped because the server made
// no progress: it accepted the connection but stopped answering (a stopped
// or wedged process, a black-holed network).
var errStalled = errors.New("the server made no progress")

// stallTransport fails a request during which the server makes no progress
// for idle: no response headers, no request body taken, no response body
// given. Only the server's time counts: time spent inside the request
// body's Read (our writer waiting for its caller) or between reads of the
// response body (our reader's caller being slow) does not.
//
// minio-go retries a failed request up to MaxRetries times, unless the
// operation's context has ended; so a stall also cancels the operation's
// context when the store made one (withStallCancel), and the caller gets the
// error after one idle period instead of MaxRetries of them.
type stallTransport struct {
	base http.RoundTripper
	idle time.Duration
}

type stallCancelKey struct{}

// withStallCancel returns a context for one store operation whose requests
// cancel it when the server stalls, and the cancel to call when the
// operation is over.
func withStallCancel(ctx context.Context) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	return context.WithValue(ctx, stallCancelKey{}, cancel), cancel
}

// stallCause replaces err by the stall when the operation's context was
// ended by one: minio-go then reports only "context canceled", which must
// not reach the caller as such (it would read as the caller's own
// cancellation: EINTR, which the kernel retries).
func stallCause(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, errStalled) {
		return err
	}
	if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}

// stalled tells whether ctx was ended by a stall.
func stalled(ctx context.Context) bool { return errors.Is(context.Cause(ctx), errStalled) }

func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	opCancel, _ := req.Context().Value(stallCancelKey{}).(context.CancelCauseFunc)
	stalled := fmt.Errorf("%w for %v (%s %s)", errStalled, t.idle, req.Method, req.URL.Host)
	wd := &watchdog{}
	wd.timer = time.AfterFunc(t.idle, func() {
		cancel(stalled)
		if opCancel != nil {
			opCancel(stalled)
		}
	})
	wd.idle = t.idle
	req = req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = &producerBody{ReadCloser: req.Body, wd: wd}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		wd.stop()
		cancel(nil)
		if cause := context.Cause(ctx); errors.Is(cause, errStalled) && !errors.Is(err, errStalled) {
			return nil, fmt.Errorf("%w (%v)", cause, err)
		}
		return nil, err
	}
	wd.pause() // until the caller reads the body
	resp.Body = &serverBody{ReadCloser: resp.Body, wd: wd, ctx: ctx, done: func() { wd.stop(); cancel(nil) }}
	return resp, nil
}

// watchdog is the timer of one request: running while the server owes us
// something, paused while we (or our caller) do.
type watchdog struct {
	mu      sync.Mutex
	idle    time.Duration
	timer   *time.Timer
	paused  int
	stopped bool
}

func (w *watchdog) pause() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.paused++
	w.timer.Stop()
}

func (w *watchdog) resume() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.paused--
	if w.paused == 0 && !w.stopped {
		w.timer.Reset(w.idle)
	}
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.timer.Stop()
}

// producerBody is a request body: the time inside its Read belongs to
// whoever feeds it, not to the server.
type producerBody struct {
	io.ReadCloser
	wd *watchdog
}

func (b *producerBody) Read(p []byte) (int, error) {
	b.wd.pause()
	defer b.wd.resume()
	return b.ReadCloser.Read(p)
}

// serverBody is a response body: the time inside its Read belongs to the
// server; the time between Reads to the caller.
type serverBody struct {
	io.ReadCloser
	wd   *watchdog
	ctx  context.Context
	once sync.Once
	done func()
}

func (b *serverBody) Read(p []byte) (int, error) {
	b.wd.resume()
	n, err := b.ReadCloser.Read(p)
	b.wd.pause()
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); errors.Is(cause, errStalled) && !errors.Is(err, errStalled) {
			err = fmt.Errorf("%w (%v)", cause, err)
		}
	}
	return n, err
}

func (b *serverBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}
