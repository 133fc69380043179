package lifecycle

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/glimpse-project/glimpse/meta"
)

// Metrics are the lifecycle's Prometheus metrics: the outcome, size and
// duration of every upload, whichever face it came through, and, at each
// scrape, the catalogue by status. They are registered on the registry the
// daemon passes in (no global registry).
type Metrics struct {
	uploads       *prometheus.CounterVec
	uploadBytes   *prometheus.CounterVec
	uploadSeconds *prometheus.HistogramVec
}

// NewMetrics creates the lifecycle's metrics and registers them on reg;
// a nil reg keeps them unregistered (tests, tools).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glimpse_uploads_total",
			Help: "Uploads settled, by outcome (active or killed).",
		}, []string{"outcome"}),
		uploadBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glimpse_upload_bytes_total",
			Help: "Bytes received by settled uploads, by outcome.",
		}, []string{"outcome"}),
		uploadSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "glimpse_upload_duration_seconds",
			Help:    "Time from the start of an upload until it is settled (active or killed).",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10), // 10 ms to 43 min
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.uploads, m.uploadBytes, m.uploadSeconds)
	}
	return m
}

func (m *Metrics) uploadSettled(active bool, bytes int64, took time.Duration) {
	outcome := "killed"
	if active {
		outcome = "active"
	}
	m.uploads.WithLabelValues(outcome).Inc()
	m.uploadBytes.WithLabelValues(outcome).Add(float64(bytes))
	m.uploadSeconds.WithLabelValues(outcome).Observe(took.Seconds())
}

// CatalogueCollector reports the number of images and the bytes they hold,
// by status, read from the registry at each scrape (so the figures are
// never out of step with the registry, restarts included).
func (s *Service) CatalogueCollector() prometheus.Collector {
	return &catalogueCollector{s: s,
		images: prometheus.NewDesc("glimpse_images", "Images in the catalogue, by status.", []string{"status"}, nil),
		bytes:  prometheus.NewDesc("glimpse_image_bytes", "Bytes of image content the catalogue records (sum of size), by status.", []string{"status"}, nil),
	}
}

type catalogueCollector struct {
	s             *Service
	images, bytes *prometheus.Desc
}

func (c *catalogueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.images
	ch <- c.bytes
}

func (c *catalogueCollector) Collect(ch chan<- prometheus.Metric) {
	count := map[meta.Status]int{}
	size := map[meta.Status]int64{}
	err := c.s.store.All(func(img *meta.Image) error {
		count[img.Status]++
		if img.Size != nil {
			size[img.Status] += *img.Size
		}
		return nil
	})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.images, err)
		return
	}
	for _, st := range meta.Statuses {
		ch <- prometheus.MustNewConstMetric(c.images, prometheus.GaugeValue, float64(count[st]), string(st))
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(size[st]), string(st))
	}
}
