// Package metered wraps a backend.Backend with Prometheus metrics: the
// latency of every store request and the requests that failed, by
// operation, and the bytes read from stored objects. It keeps the optional interfaces of what it wraps
// (backend.RandomWriter, backend.FileReader), so that wrapping changes no
// fast path.
package metered

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/glimpse-project/glimpse/backend"
)

// Metrics are the store metrics, labelled by store kind (file, s3, swift,
// rbd) and operation.
type Metrics struct {
	seconds   *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	readBytes *prometheus.CounterVec
}

// NewMetrics creates the store metrics and registers them on reg; a nil
// reg keeps them unregistered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "glimpse_store_request_duration_seconds",
			Help:    "Latency of requests to the content store, by store and operation (read and write: one call each).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100 µs to 26 s
		}, []string{"store", "op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glimpse_store_errors_total",
			Help: "Requests to the content store that failed, by store and operation (a missing object on open or stat included).",
		}, []string{"store", "op"}),
		readBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glimpse_store_read_bytes_total",
			Help: "Bytes the daemon read from stored objects through the store's readers, by store (reads through a local file's descriptor, which bypass the daemon, not included).",
		}, []string{"store"}),
	}
	if reg != nil {
		reg.MustRegister(m.seconds, m.errors, m.readBytes)
	}
	return m
}

// Wrap returns b with every request measured under the label store.
func Wrap(b backend.Backend, store string, m *Metrics) backend.Backend {
	return &meteredBackend{b: b, o: observer{m: m, store: store}}
}

type observer struct {
	m     *Metrics
	store string
}

// observe records request op, started at start, which returned err.
func (o observer) observe(op string, start time.Time, err error) {
	o.m.seconds.WithLabelValues(o.store, op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, io.EOF) {
		o.m.errors.WithLabelValues(o.store, op).Inc()
	}
}

type meteredBackend struct {
	b backend.Backend
	o observer
}

func (mb *meteredBackend) Create(ctx context.Context, key string) (backend.Writer, error) {
	start := time.Now()
	w, err := mb.b.Create(ctx, key)
	mb.o.observe("create", start, err)
	if err != nil {
		return nil, err
	}
	mw := &meteredWriter{w: w, o: mb.o}
	if rw, ok := w.(backend.RandomWriter); ok {
		return &meteredRandomWriter{meteredWriter: mw, rw: rw}, nil
	}
	return mw, nil
}

func (mb *meteredBackend) Open(ctx context.Context, key string) (backend.Reader, error) {
	start := time.Now()
	r, err := mb.b.Open(ctx, key)
	mb.o.observe("open", start, err)
	if err != nil {
		return nil, err
	}
	mr := &meteredReader{r: r, o: mb.o}
	if fr, ok := r.(backend.FileReader); ok {
		return &meteredFileReader{meteredReader: mr, fd: fr.Fd}, nil
	}
	return mr, nil
}

func (mb *meteredBackend) Stat(ctx context.Context, key string) (backend.Info, error) {
	start := time.Now()
	info, err := mb.b.Stat(ctx, key)
	mb.o.observe("stat", start, err)
	return info, err
}

func (mb *meteredBackend) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := mb.b.Delete(ctx, key)
	mb.o.observe("delete", start, err)
	return err
}

func (mb *meteredBackend) List(ctx context.Context, fn func(backend.Info) error) error {
	start := time.Now()
	err := mb.b.List(ctx, fn)
	mb.o.observe("list", start, err)
	return err
}

func (mb *meteredBackend) AbortIncomplete(ctx context.Context) error {
	start := time.Now()
	err := mb.b.AbortIncomplete(ctx)
	mb.o.observe("abort_incomplete", start, err)
	return err
}

func (mb *meteredBackend) AbortStale(ctx context.Context, live func(key string) bool) error {
	start := time.Now()
	err := mb.b.AbortStale(ctx, live)
	mb.o.observe("abort_stale", start, err)
	return err
}

func (mb *meteredBackend) Close() error { return mb.b.Close() }

type meteredWriter struct {
	w backend.Writer
	o observer
}

func (w *meteredWriter) Write(p []byte) (int, error) {
	start := time.Now()
	n, err := w.w.Write(p)
	w.o.observe("write", start, err)
	return n, err
}

func (w *meteredWriter) Commit(ctx context.Context) error {
	start := time.Now()
	err := w.w.Commit(ctx)
	w.o.observe("commit", start, err)
	return err
}

func (w *meteredWriter) Abort(ctx context.Context) error {
	start := time.Now()
	err := w.w.Abort(ctx)
	w.o.observe("abort", start, err)
	return err
}

type meteredRandomWriter struct {
	*meteredWriter
	rw backend.RandomWriter
}

func (w *meteredRandomWriter) WriteAt(p []byte, off int64) (int, error) {
	start := time.Now()
	n, err := w.rw.WriteAt(p, off)
	w.o.observe("write", start, err)
	return n, err
}

func (w *meteredRandomWriter) ReadAt(p []byte, off int64) (int, error) {
	start := time.Now()
	n, err := w.rw.ReadAt(p, off)
	w.o.observe("read", start, err)
	return n, err
}

func (w *meteredRandomWriter) Truncate(size int64) error {
	start := time.Now()
	err := w.rw.Truncate(size)
	w.o.observe("truncate", start, err)
	return err
}

type meteredReader struct {
	r backend.Reader
	o observer
}

func (r *meteredReader) ReadAt(p []byte, off int64) (int, error) {
	start := time.Now()
	n, err := r.r.ReadAt(p, off)
	r.o.observe("read", start, err)
	r.o.m.readBytes.WithLabelValues(r.o.store).Add(float64(n))
	return n, err
}

func (r *meteredReader) Size() int64  { return r.r.Size() }
func (r *meteredReader) Close() error { return r.r.Close() }

// meteredFileReader keeps the descriptor visible, so the mount's
// passthrough and the REST listener's sendfile still reach the file.
// Reads through the descriptor bypass the metrics, as they bypass the
// daemon.
type meteredFileReader struct {
	*meteredReader
	fd func() uintptr
}

func (r *meteredFileReader) Fd() uintptr { return r.fd() }
