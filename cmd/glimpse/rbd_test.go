//go:build ceph

package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/backend/backendtest"
)

// startCeph starts a one-mon, one-OSD cluster (scripts/ceph) on free
// loopback ports for this test and exports CEPH_CONF for the daemon. It
// returns a runner of scripts/ceph for this cluster ("stop --keep",
// "start": the store going away and back).
func startCeph(t *testing.T) func(args ...string) string {
	return backendtest.CephServer("../../scripts/ceph").StartForTest(t)
}

// rbdImages lists the RBD images in pool behind the daemon's back.
func rbdImages(t *testing.T, pool string) []string {
	t.Helper()
	out, err := exec.Command("timeout", "60", "rbd", "ls", "--pool", pool).Output()
	if err != nil {
		t.Fatalf("rbd ls --pool %s: %v", pool, err)
	}
	return strings.Fields(string(out))
}

// The mount and REST work unchanged on Ceph RBD (a binary built with -tags
// ceph,pacific): copy in, restart, read back, rm, and the REST round trip;
// the pool holds the image's RBD image after each upload and nothing after
// each delete.
func TestServeOnRBD(t *testing.T) {
	needMount(t)
	startCeph(t)
	storeRoundTrip(t, 12<<20, func(_, id string) {
		want := "[]"
		if id != "" {
			want = "[" + id + "]"
		}
		if got := rbdImages(t, "glimpse"); fmt.Sprint(got) != want {
			t.Fatalf("pool holds %v, want %s", got, want)
		}
	}, "--store", "rbd://glimpse")
}

// Ceph going away in the middle of a copy (mon and OSD stopped): EIO,
// killed with the reason, the daemon serving, and once Ceph is back the
// kept image reads and no RBD image of the killed upload is left.
func TestServeRBDGoesAwayMidCopy(t *testing.T) {
	needMount(t)
	script := startCeph(t)
	storeGoesAwayMidCopy(t, func() func() {
		script("stop", "--keep")
		return func() { script("start") }
	}, func(string) []string { return rbdImages(t, "glimpse") },
		"--store", "rbd://glimpse", "--store-timeout", "5s")
}
