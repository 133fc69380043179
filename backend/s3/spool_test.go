package s3_test

import (
	"context"
	"testing"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/spool"
)

// The suite through spool.Wrap: the RandomWriter case (out of order, a
// hole, a truncation) on S3.
func TestConformanceSpooled(t *testing.T) {
	m := sharedMinio(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return spool.Wrap(open(t, config(m)), t.TempDir())
	})
}

// In-order writes through the spool stream: the multipart upload is under
// way before Commit.
func TestSpoolStreams(t *testing.T) {
	s := open(t, config(sharedMinio(t)))
	ctx := context.Background()
	w, err := spool.New(ctx, s, "streamed", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := writeN(w, 3*testPart); err != nil {
		t.Fatal(err)
	}
	if !w.Streaming() {
		t.Fatal("in-order writes stopped streaming")
	}
	if up := incomplete(t, s); len(up) != 1 {
		t.Fatalf("incomplete uploads while writing: %v, want one", up)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Stat(ctx, "streamed"); err != nil || info.Size != 3*testPart {
		t.Fatalf("stat: %+v %v", info, err)
	}
}
