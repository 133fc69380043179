package spool_test

import (
	"context"
	"testing"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/spool"
)

// TestSpoolLeavesTheReserve: the reserve holds for a writer that fell
// back to a spool file in dir.
func TestSpoolLeavesTheReserve(t *testing.T) {
	backendtest.RunReserve(t, func(t *testing.T, dir string, reserve int64) backend.Writer {
		ctx := context.Background()
		w, err := spool.WrapReserving(newLocal(t), dir, reserve).Create(ctx, "img")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Abort(ctx) })
		sw := w.(*spool.Writer)
		// Out of order: the writer falls back to a spool file in dir.
		if _, err := sw.WriteAt(make([]byte, 4096), 256<<10); err != nil {
			t.Fatal(err)
		}
		if _, err := sw.WriteAt(make([]byte, 4096), 0); err != nil {
			t.Fatal(err)
		}
		if sw.Streaming() {
			t.Fatal("still streaming after an out-of-order write")
		}
		return w
	})
}
