package local_test

import (
	"testing"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/local"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		l, err := local.Open(local.Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}
