package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/ncw/swift/v2"

	"github.com/glimpse-project/glimpse/backend/backendtest"
)

// startSwift starts a single-node Swift (scripts/swift) on free loopback
// ports for this test and exports ST_AUTH, ST_USER and ST_KEY for the
// daemon. Without Swift's packages it skips, or fails when CI asks for
// Swift in GLIMPSE_TEST_STORES. It returns a runner of scripts/swift for
// this Swift ("stop --keep", "start": the store going away and back).
func startSwift(t *testing.T) func(args ...string) string {
	return backendtest.SwiftServer("../../scripts/swift").StartForTest(t)
}

// swiftObjects lists container behind the daemon's back (nil if it does
// not exist).
func swiftObjects(t *testing.T, container string) []string {
	t.Helper()
	ctx := context.Background()
	c := &swift.Connection{AuthUrl: os.Getenv("ST_AUTH"), UserName: os.Getenv("ST_USER"), ApiKey: os.Getenv("ST_KEY")}
	if err := c.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	names, err := c.ObjectNamesAll(ctx, container, nil)
	if errors.Is(err, swift.ContainerNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// The mount works unchanged on Swift: a copy larger than a segment goes up
// as a static large object (three 8 MiB segments), survives a restart, and
// rm removes it.
func TestServeOnSwift(t *testing.T) {
	needMount(t)
	startSwift(t)
	storeRoundTrip(t, 20<<20, func(_, id string) {
		want := "[]"
		if id != "" {
			want = "[glimpse/" + id + "]"
		}
		if got := swiftObjects(t, "images"); fmt.Sprint(got) != want && !(id == "" && got == nil) {
			t.Fatalf("container holds %v, want %s", got, want)
		}
		if id == "" {
			if segs := swiftObjects(t, "images_segments"); len(segs) != 0 {
				t.Fatalf("segments left after the delete: %v", segs)
			}
		}
	}, "--store", "swift://images/glimpse?segment_size=8388608")
}

// Swift going away in the middle of a copy (every Swift server stopped):
// as for S3, EIO at close, killed with the reason, the daemon serving, and
// once Swift is back the kept image reads and no segment is left.
func TestServeSwiftGoesAwayMidCopy(t *testing.T) {
	needMount(t)
	script := startSwift(t)
	storeGoesAwayMidCopy(t, func() func() {
		script("stop", "--keep")
		return func() { script("start") }
	}, func(id string) []string {
		return append(swiftObjects(t, "images"), swiftObjects(t, "images_segments")...)
	}, "--store", "swift://images?segment_size=8388608", "--store-timeout", "5s")
}
