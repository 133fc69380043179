package backendtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// ScriptServer is a store server (Swift, Ceph) that one of the project's
// scripts/ starts on loopback ports chosen here, once per test binary, and
// stops when the binary is done, stopping only what it started. Without
// the server's packages the tests that need it skip, unless CI is set and
// GLIMPSE_TEST_STORES names the store: then they fail.
type ScriptServer struct {
	Store  string   // its name in GLIMPSE_TEST_STORES
	Script string   // the scripts/ script, relative to the test's directory
	Bins   []string // programs it needs
	Hint   string   // how to install them
	Ports  int      // free loopback ports it takes
	// Env is the script's environment for a work dir and the ports.
	Env func(dir string, ports []int) []string

	once    sync.Once
	dir     string // the work dir, removed by Stop
	env     []string
	ports   []int
	started time.Duration // how long the start took
	err     error         // the start failed
	skip    string        // why the server cannot be started here
}

// Need starts the server the first time it is called, and returns it, or
// skips or fails the test.
func (s *ScriptServer) Need(t testing.TB) *ScriptServer {
	t.Helper()
	s.once.Do(s.start)
	switch {
	case s.err != nil:
		t.Fatal(s.err)
	case s.skip != "" && OptedIn(s.Store):
		t.Fatalf("CI wants %s tested (GLIMPSE_TEST_STORES) but: %s", s.Store, s.skip)
	case s.skip != "":
		t.Skip(s.skip)
	}
	return s
}

func (s *ScriptServer) start() {
	for _, bin := range s.Bins {
		if _, err := exec.LookPath(bin); err != nil {
			s.skip = fmt.Sprintf("no %s: %s", bin, s.Hint)
			return
		}
	}
	dir, err := os.MkdirTemp("", "glimpse-"+s.Store+"-test-")
	if err != nil {
		s.err = err
		return
	}
	s.dir = dir // removed by Stop even if the start fails half-way
	if s.ports, err = FreePorts(s.Ports); err != nil {
		s.err = err
		return
	}
	s.env = s.Env(dir, s.ports)
	t0 := time.Now()
	out, err := s.Run("start")
	s.started = time.Since(t0)
	if err != nil {
		s.err = fmt.Errorf("%s start: %v\n%s", s.Script, err, out)
	}
}

// StartForTest starts a server of this test's own (s must be fresh: one
// per test), stopped when the test ends, exports the variables the
// script's "env" prints, and returns a runner of the script that fails the
// test on an error ("stop --keep", "start": the store going away and back).
func (s *ScriptServer) StartForTest(t *testing.T) func(args ...string) string {
	t.Helper()
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	s.Need(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := s.Run(args...)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", s.Script, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, line := range strings.Split(strings.TrimSpace(run("env")), "\n") {
		k, v, _ := strings.Cut(line, "=")
		t.Setenv(k, v)
	}
	return run
}

// Run runs the script with the server's environment.
func (s *ScriptServer) Run(args ...string) ([]byte, error) {
	cmd := exec.Command(s.Script, args...)
	cmd.Env = append(os.Environ(), s.env...)
	return cmd.CombinedOutput()
}

// Dir is the server's work dir.
func (s *ScriptServer) Dir() string { return s.dir }

// Port is the i-th port the server was given.
func (s *ScriptServer) Port(i int) int { return s.ports[i] }

// Started is how long the server took to start.
func (s *ScriptServer) Started() time.Duration { return s.started }

// Stop stops the server if this binary started one, and removes its work
// dir. TestMain calls it after m.Run.
func (s *ScriptServer) Stop() error {
	if s.dir == "" {
		return nil
	}
	defer os.RemoveAll(s.dir)
	if s.env == nil {
		return nil // the script never ran
	}
	if out, err := s.Run("stop"); err != nil {
		return fmt.Errorf("stopping %s: %v\n%s", s.Store, err, out)
	}
	return nil
}

// FreePorts returns n distinct loopback ports that were free a moment ago.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// OptedIn reports whether CI wants store tested, so that its missing
// server is a failure rather than a skip.
func OptedIn(store string) bool {
	stores := strings.FieldsFunc(os.Getenv("GLIMPSE_TEST_STORES"), func(r rune) bool { return r == ',' || r == ' ' })
	return os.Getenv("CI") != "" && slices.Contains(stores, store)
}

// SwiftServer is a single-node Swift started by scripts/swift, which
// script names relative to the test's directory.
func SwiftServer(script string) *ScriptServer {
	return &ScriptServer{
		Store:  "swift",
		Script: script,
		Bins:   []string{"swift-proxy-server", "swift-object-server", "swift-container-server", "swift-account-server", "memcached", "curl"},
		Hint:   "apt-get install swift swift-proxy swift-object swift-container swift-account memcached curl",
		Ports:  5,
		Env:    SwiftEnv,
	}
}

// SwiftEnv is scripts/swift's environment for a Swift in dir on five
// ports: proxy, object, container, account, memcached.
func SwiftEnv(dir string, ports []int) []string {
	return []string{
		"SWIFT_DIR=" + filepath.Join(dir, "swift"),
		fmt.Sprintf("SWIFT_PROXY_PORT=%d", ports[0]),
		fmt.Sprintf("SWIFT_OBJECT_PORT=%d", ports[1]),
		fmt.Sprintf("SWIFT_CONTAINER_PORT=%d", ports[2]),
		fmt.Sprintf("SWIFT_ACCOUNT_PORT=%d", ports[3]),
		fmt.Sprintf("SWIFT_MEMCACHE_PORT=%d", ports[4]),
	}
}

// CephServer is a one-mon, one-OSD Ceph started by scripts/ceph, which
// script names relative to the test's directory.
func CephServer(script string) *ScriptServer {
	return &ScriptServer{
		Store:  "rbd",
		Script: script,
		Bins:   []string{"ceph-mon", "ceph-osd", "ceph", "rados", "uuidgen"},
		Hint:   "apt-get install ceph-mon ceph-osd ceph-common uuid-runtime",
		Ports:  2,
		Env: func(dir string, ports []int) []string {
			return []string{
				"CEPH_DIR=" + filepath.Join(dir, "ceph"),
				"CEPH_WATCH_TIMEOUT=5",
				fmt.Sprintf("CEPH_MON_V2_PORT=%d", ports[0]),
				fmt.Sprintf("CEPH_MON_V1_PORT=%d", ports[1]),
			}
		},
	}
}
