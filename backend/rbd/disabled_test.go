//go:build !ceph

package rbd

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestDisabled(t *testing.T) {
	_, err := Open(context.Background(), Config{Pool: "images"})
	if !errors.Is(err, ErrDisabled) || !strings.Contains(err.Error(), "-tags ceph,pacific") {
		t.Fatalf("Open without the ceph tag: %v", err)
	}
	if strings.Contains(os.Getenv("GLIMPSE_TEST_STORES"), "rbd") {
		t.Log("GLIMPSE_TEST_STORES names rbd, but this test binary was built without -tags ceph,pacific: the RBD store is tested only by go test -tags ceph,pacific ./backend/rbd")
	}
}
