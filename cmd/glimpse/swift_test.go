package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// startSwift starts a single-node Swift (scripts/swift) on free loopback
// ports for this test and exports ST_AUTH, ST_USER and ST_KEY for the
// daemon. Without Swift's packages it skips, or fails when CI asks for
// Swift in GLIMPSE_TEST_STORES.
func startSwift(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"swift-proxy-server", "swift-object-server", "memcached"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" && strings.Contains(os.Getenv("GLIMPSE_TEST_STORES"), "swift") {
				t.Fatalf("no %s (scripts/install-deps installs Swift)", bin)
			}
			t.Skipf("no %s: Swift is not installed", bin)
		}
	}
	script, err := filepath.Abs("../../scripts/swift")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "SWIFT_DIR="+filepath.Join(t.TempDir(), "swift"))
	seen := map[string]bool{}
	for _, name := range []string{"PROXY", "OBJECT", "CONTAINER", "ACCOUNT", "MEMCACHE"} {
		port := freeAddr(t)
		for seen[port] {
			port = freeAddr(t)
		}
		seen[port] = true
		env = append(env, fmt.Sprintf("SWIFT_%s_PORT=%s", name, port[strings.LastIndexByte(port, ':')+1:]))
	}
	run := func(args ...string) string {
		cmd := exec.Command(script, args...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("scripts/swift %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { run("stop") })
	run("start")
	for _, line := range strings.Split(strings.TrimSpace(run("env")), "\n") {
		k, v, _ := strings.Cut(line, "=")
		t.Setenv(k, v)
	}
}

// The mount works unchanged on Swift: a copy larger than a segment goes up
// as a static large object (three 8 MiB segments), survives a restart, and
// rm removes it.
func TestServeOnSwift(t *testing.T) {
	needMount(t)
	startSwift(t)
	storeRoundTrip(t, 20<<20, nil, "--store", "swift://images/glimpse?segment_size=8388608")
}
