package api

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the REST listener's Prometheus metrics. Requests are
// labelled by the route pattern that served them (GET /v2/images/{id}),
// never by the raw path, so that ids and junk paths cannot blow up the
// number of series.
type Metrics struct {
	requests        *prometheus.CounterVec
	seconds         *prometheus.HistogramVec
	downloadBytes   prometheus.Counter
	downloadSeconds prometheus.Histogram
	// Keystone validations (cache misses), by result
	keystoneValidations *prometheus.CounterVec
	keystoneSeconds     prometheus.Histogram
}

// NewMetrics creates the listener's metrics and registers them on reg; a
// nil reg keeps them unregistered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glimpse_http_requests_total",
			Help: "REST requests answered, by route and status code.",
		}, []string{"route", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "glimpse_http_request_duration_seconds",
			Help:    "Time to answer a REST request (uploads and downloads included), by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5 ms to 2.2 min
		}, []string{"route"}),
		downloadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glimpse_download_bytes_total",
			Help: "Image bytes sent by REST downloads (GET /v2/images/{id}/file).",
		}),
		downloadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "glimpse_download_duration_seconds",
			Help:    "Time of successful REST downloads, first byte of the request to last byte of the answer.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1 ms to 4.4 min
		}),
		keystoneValidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glimpse_keystone_validations_total",
			Help: "Tokens validated with Keystone (answers from the token cache not counted), by result: valid, invalid, not_project_scoped, unavailable.",
		}, []string{"result"}),
		keystoneSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "glimpse_keystone_validation_duration_seconds",
			Help:    "Time of one token validation with Keystone.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8), // 1 ms to 16 s
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.seconds, m.downloadBytes, m.downloadSeconds, m.keystoneValidations, m.keystoneSeconds)
	}
	return m
}

const downloadRoute = "GET /v2/images/{id}/file"

func (m *Metrics) observe(route string, status int, bytes int64, took time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.seconds.WithLabelValues(route).Observe(took.Seconds())
	if route == downloadRoute && (status == http.StatusOK || status == http.StatusPartialContent) {
		m.downloadBytes.Add(float64(bytes))
		m.downloadSeconds.Observe(took.Seconds())
	}
}

// observeKeystone counts one validation with Keystone.
func (m *Metrics) observeKeystone(result string, took time.Duration) {
	m.keystoneValidations.WithLabelValues(result).Inc()
	m.keystoneSeconds.Observe(took.Seconds())
}

// requestInfo carries what the access log wants to know from inside the
// handlers (who asked) back out to ServeHTTP.
type requestInfo struct {
	project string
}

type requestInfoKey struct{}

func withRequestInfo(r *http.Request) (*http.Request, *requestInfo) {
	info := &requestInfo{}
	return r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)), info
}

// noteProject records the authenticated project for the access log.
func noteProject(r *http.Request, project string) {
	if info, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
		info.project = project
	}
}

// globalRequestID is the shape oslo.middleware accepts for an inbound
// X-Openstack-Request-Id: a caller's own request id, which Glance keeps as
// global_request_id beside the one it generates.
var globalRequestID = regexp.MustCompile(`^req-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$`)
