package fs

import (
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkMetricsObserve is what metering adds to each FUSE request.
func BenchmarkMetricsObserve(b *testing.B) {
	f := &meteredFS{m: NewMetrics(prometheus.NewRegistry())}
	for b.Loop() {
		f.observe("write", time.Now(), fuse.OK)
	}
}

// BenchmarkTimeNow is the floor under BenchmarkMetricsObserve (two clock
// reads), to read its figure against on a loaded machine.
func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		_ = time.Since(time.Now())
	}
}
