package metered_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/local"
	"github.com/glimpse-project/glimpse/backend/metered"
)

func openLocal(t *testing.T) backend.Backend {
	l, err := local.Open(local.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A wrapped store still passes the whole conformance suite, random writes
// included.
func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return metered.Wrap(openLocal(t), "file", metered.NewMetrics(nil))
	})
}

// Wrapping keeps the optional interfaces the fast paths look for, and
// counts requests and failures.
func TestKeepsFastPathsAndCounts(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	b := metered.Wrap(openLocal(t), "file", metered.NewMetrics(reg))
	defer b.Close()
	w, err := b.Create(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.(backend.RandomWriter); !ok {
		t.Error("a local store's writer lost RandomWriter when wrapped")
	}
	w.Write([]byte("hello"))
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := b.Open(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, ok := r.(backend.FileReader); !ok {
		t.Error("a local store's reader lost FileReader (passthrough, sendfile) when wrapped")
	}
	if _, err := b.Open(ctx, "missing"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("open missing: %v", err)
	}
	buf := make([]byte, 3)
	if _, err := r.ReadAt(buf, 1); err != nil || string(buf) != "ell" {
		t.Fatalf("read: %q, %v", buf, err)
	}
	want := "# HELP glimpse_store_read_bytes_total Bytes the daemon read from stored objects through the store's readers, by store (reads through a local file's descriptor, which bypass the daemon, not included).\n" +
		"# TYPE glimpse_store_read_bytes_total counter\nglimpse_store_read_bytes_total{store=\"file\"} 3\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "glimpse_store_read_bytes_total"); err != nil {
		t.Error(err)
	}
	n, err := testutil.GatherAndCount(reg, "glimpse_store_request_duration_seconds")
	if err != nil || n < 4 { // create, write, commit, open: one series each
		t.Errorf("duration series: %d, %v", n, err)
	}
	h, _ := reg.Gather()
	var opens, failedOpens float64
	for _, mf := range h {
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["op"] != "open" {
				continue
			}
			switch mf.GetName() {
			case "glimpse_store_request_duration_seconds":
				opens = float64(m.Histogram.GetSampleCount())
			case "glimpse_store_errors_total":
				failedOpens = m.Counter.GetValue()
			}
		}
	}
	if opens != 2 || failedOpens != 1 {
		t.Errorf("opens %v (want 2), failed opens %v (want 1)", opens, failedOpens)
	}
}
