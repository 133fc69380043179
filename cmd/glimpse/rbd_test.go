//go:build ceph

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The mount works unchanged on Ceph RBD (a binary built with -tags
// ceph,pacific): copy in, restart, read back, rm. scripts/ceph starts a
// one-mon, one-OSD cluster on free loopback ports for the test.
func TestServeOnRBD(t *testing.T) {
	needMount(t)
	for _, bin := range []string{"ceph-mon", "ceph-osd"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" && strings.Contains(os.Getenv("GLIMPSE_TEST_STORES"), "rbd") {
				t.Fatalf("no %s (scripts/install-deps installs Ceph)", bin)
			}
			t.Skipf("no %s: Ceph is not installed", bin)
		}
	}
	script, err := filepath.Abs("../../scripts/ceph")
	if err != nil {
		t.Fatal(err)
	}
	v2, v1 := freeAddr(t), freeAddr(t)
	env := append(os.Environ(),
		"CEPH_DIR="+filepath.Join(t.TempDir(), "ceph"),
		"CEPH_WATCH_TIMEOUT=5",
		"CEPH_MON_V2_PORT="+v2[strings.LastIndexByte(v2, ':')+1:],
		"CEPH_MON_V1_PORT="+v1[strings.LastIndexByte(v1, ':')+1:])
	run := func(args ...string) string {
		cmd := exec.Command(script, args...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("scripts/ceph %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { run("stop") })
	run("start")
	k, v, _ := strings.Cut(strings.TrimSpace(run("env")), "=")
	t.Setenv(k, v)

	storeRoundTrip(t, 12<<20, nil, "--store", "rbd://glimpse")
}
