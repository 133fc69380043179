package local

import (
	"context"
	"testing"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
)

func TestReserveIsLeftFree(t *testing.T) {
	backendtest.RunReserve(t, func(t *testing.T, dir string, reserve int64) backend.Writer {
		l, err := Open(Config{Dir: dir, Reserve: reserve})
		if err != nil {
			t.Fatal(err)
		}
		w, err := l.Create(context.Background(), "img")
		if err != nil {
			t.Fatal(err)
		}
		return w
	})
}
