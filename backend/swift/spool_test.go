package swift_test

import (
	"testing"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/spool"
)

// The suite through spool.Wrap, as the daemon uses Swift: the RandomWriter
// case (out of order, a hole, a truncation, a read back) falls back by
// committing the streamed prefix and reading it back from Swift.
func TestConformanceSpooled(t *testing.T) {
	s := need(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return spool.Wrap(open(t, s.config(randomName(t), "")), t.TempDir())
	})
}
