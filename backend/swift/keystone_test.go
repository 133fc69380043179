package swift_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/swift"
)

// TestKeystone: the store authenticates with Keystone v3, the way a
// Glance deployment's Swift is reached: OS_* variables, a project-scoped
// password token from a real Keystone (scripts/keystone), and the storage
// URL taken from the object-store endpoint of its catalogue. The proxy is a
// second Swift (scripts/swift with SWIFT_KEYSTONE_URL) that checks the
// tokens with keystonemiddleware.
func TestKeystone(t *testing.T) {
	need(t) // Swift itself: skip or fail as the other tests do
	for _, bin := range []string{"keystone-manage", "keystone-wsgi-public"} {
		if _, err := exec.LookPath(bin); err != nil {
			skipOrFail(t, fmt.Sprintf("no %s: apt-get install python3-keystone python3-keystonemiddleware", bin))
		}
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import keystonemiddleware").Run(); err != nil {
		skipOrFail(t, "no keystonemiddleware: apt-get install python3-keystonemiddleware")
	}
	t.Parallel()

	ports, err := backendtest.FreePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keystoneURL := fmt.Sprintf("http://127.0.0.1:%d/v3", ports[0])
	ks := scriptRunner(t, "keystone",
		"KEYSTONE_DIR="+filepath.Join(dir, "keystone"),
		fmt.Sprintf("KEYSTONE_PORT=%d", ports[0]),
		fmt.Sprintf("KEYSTONE_SWIFT_URL=http://127.0.0.1:%d/v1/KEY_%%(project_id)s", ports[1]))
	t.Cleanup(func() { ks("stop") })
	t0 := time.Now()
	ks("start")
	t.Logf("keystone started in %v", time.Since(t0).Round(100*time.Millisecond))

	sw := scriptRunner(t, "swift", append(backendtest.SwiftEnv(dir, ports[1:6]), "SWIFT_KEYSTONE_URL="+keystoneURL)...)
	t.Cleanup(func() { sw("stop") })
	t0 = time.Now()
	sw("start")
	t.Logf("swift started in %v", time.Since(t0).Round(100*time.Millisecond))
	t0 = time.Now()

	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(ks("env")), "\n") {
		k, v, _ := strings.Cut(line, "=")
		vars[k] = v
	}
	config := func(t *testing.T, vars map[string]string) swift.Config {
		cfg, err := swift.ParseURL("swift://"+randomName(t), func(k string) string { return vars[k] })
		if err != nil {
			t.Fatal(err)
		}
		cfg.SegmentSize = segSize
		cfg.Timeout = 30 * time.Second
		return cfg
	}

	// The store reached Swift through Keystone's catalogue: the account is
	// the project's (KEY_<id>), not a tempauth one (AUTH_).
	st := open(t, config(t, vars))
	if u := st.Connection().StorageUrl; !strings.Contains(u, "/v1/KEY_") {
		t.Fatalf("storage URL %s is not the Keystone project's account", u)
	}

	t.Logf("authenticated in %v", time.Since(t0).Round(100*time.Millisecond))
	t0 = time.Now()
	wrong := maps.Clone(vars)
	wrong["OS_PASSWORD"] = "not-the-password"
	if s, err := swift.Open(context.Background(), config(t, wrong)); err == nil {
		s.Close()
		t.Fatal("a wrong Keystone password was accepted")
	}

	t.Logf("wrong password refused in %v", time.Since(t0).Round(100*time.Millisecond))
	t0 = time.Now()
	// A large object (segments and an SLO manifest, both written with the
	// Keystone token) round trips; the conformance suite proper runs on
	// tempauth (TestConformance), as auth changes nothing past the token.
	ctx := context.Background()
	data := make([]byte, 5*segSize/2)
	rand.Read(data)
	if err := backendtest.Put(ctx, st, "img", data); err != nil {
		t.Fatal(err)
	}
	got, err := backendtest.Get(ctx, st, "img")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	if info, err := st.Stat(ctx, "img"); err != nil || info.Size != int64(len(data)) {
		t.Fatalf("stat: %+v %v", info, err)
	}
	if err := st.Delete(ctx, "img"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, "img"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	t.Logf("round trip in %v", time.Since(t0).Round(100*time.Millisecond))
}

// scriptRunner returns a function that runs scripts/NAME with env added and
// fails the test if it fails.
func scriptRunner(t *testing.T, name string, env ...string) func(args ...string) string {
	return func(args ...string) string {
		cmd := exec.Command("../../scripts/"+name, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("scripts/%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
}

// skipOrFail skips, unless CI asked for Keystone in GLIMPSE_TEST_STORES.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if backendtest.OptedIn("keystone") {
		t.Fatalf("CI wants Keystone tested (GLIMPSE_TEST_STORES) but: %s", why)
	}
	t.Skip(why)
}
