package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta/kv/kvtest"
)

// What the crash and soak tests share: REST calls made the way a plain
// client makes them, and the invariants checked against a daemon.

// source is content a test sent, with the hashes it must end up with.
type source struct {
	size        int64
	md5, sha512 string
}

func sourceOf(b []byte) source {
	m, s := md5.Sum(b), sha512.Sum512(b)
	return source{int64(len(b)), hex.EncodeToString(m[:]), hex.EncodeToString(s[:])}
}

// restCall does one request and returns the status and body.
func restCall(ctx context.Context, method, url string, body io.Reader, contentType string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// restCreate registers a raw image named name and returns its id.
func restCreate(ctx context.Context, addr, name string) (string, error) {
	body := fmt.Sprintf(`{"name": %q, "disk_format": "raw", "container_format": "bare"}`, name)
	code, b, err := restCall(ctx, "POST", "http://"+addr+"/v2/images", strings.NewReader(body), "application/json")
	if err != nil {
		return "", err
	}
	if code != http.StatusCreated {
		return "", fmt.Errorf("create %s: %d %s", name, code, b)
	}
	var img struct{ ID string }
	if err := json.Unmarshal(b, &img); err != nil {
		return "", err
	}
	return img.ID, nil
}

// restUpload PUTs r as the content of image id; nil means the daemon
// acknowledged it (204).
func restUpload(ctx context.Context, addr, id string, r io.Reader) error {
	code, b, err := restCall(ctx, "PUT", "http://"+addr+"/v2/images/"+id+"/file", r, "application/octet-stream")
	if err != nil {
		return err
	}
	if code != http.StatusNoContent {
		return fmt.Errorf("upload %s: %d %s", id, code, b)
	}
	return nil
}

// restImage is the image as GET /v2/images/{id} shows it; nil when 404.
type restImage struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Status      string  `json:"status"`
	Size        *int64  `json:"size"`
	Checksum    *string `json:"checksum"`
	OSHashValue *string `json:"os_hash_value"`
}

func restGet(t *testing.T, addr, id string) *restImage {
	t.Helper()
	code, b, err := restCall(context.Background(), "GET", "http://"+addr+"/v2/images/"+id, nil, "")
	if err != nil {
		t.Fatalf("show %s: %v", id, err)
	}
	if code == http.StatusNotFound {
		return nil
	}
	if code != http.StatusOK {
		t.Fatalf("show %s: %d %s", id, code, b)
	}
	var img restImage
	if err := json.Unmarshal(b, &img); err != nil {
		t.Fatal(err)
	}
	return &img
}

// holds reports whether img holds exactly src.
func (img *restImage) holds(src source) bool {
	return img.Size != nil && *img.Size == src.size && img.Checksum != nil && *img.Checksum == src.md5 &&
		img.OSHashValue != nil && *img.OSHashValue == src.sha512
}

// restScrub asks the daemon to scrub (without marking) and returns the
// report.
func restScrub(t *testing.T, addr string) lifecycle.CheckReport {
	t.Helper()
	code, b, err := restCall(context.Background(), "POST", "http://"+addr+"/v2/glimpse/scrub", nil, "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrub: %d %s %v", code, b, err)
	}
	var rep lifecycle.CheckReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// checkRecovered checks the invariants that hold once a daemon has
// recovered and nothing is being written: a legal status for every image,
// none in flight, every image with content holding what its record says
// (re-hashed), no stored object without an owner, and no partial write
// left in the local store under data.
func checkRecovered(t *testing.T, addr, data string) lifecycle.CheckReport {
	t.Helper()
	rep := restScrub(t, addr)
	if len(rep.Problems) != 0 {
		t.Fatalf("invariants broken after recovery: %+v", rep.Problems)
	}
	if inFlight := listInFlight(t, addr); len(inFlight) != 0 {
		t.Fatalf("images still in flight after recovery: %+v", inFlight)
	}
	if partial, _ := os.ReadDir(filepath.Join(data, "images", ".partial")); len(partial) != 0 {
		t.Fatalf("partial writes left after recovery: %d", len(partial))
	}
	return rep
}

// listInFlight lists the images saving, uploading or importing.
func listInFlight(t *testing.T, addr string) []restImage {
	t.Helper()
	var all []restImage
	for _, st := range []string{"saving", "uploading", "importing"} {
		code, b, err := restCall(context.Background(), "GET", "http://"+addr+"/v2/images?status="+st, nil, "")
		if err != nil || code != http.StatusOK {
			t.Fatalf("list %s: %d %v", st, code, err)
		}
		var list struct{ Images []restImage }
		if err := json.Unmarshal(b, &list); err != nil {
			t.Fatal(err)
		}
		all = append(all, list.Images...)
	}
	return all
}

// waitSettled returns once no image is in flight: clients that gave up
// have had their uploads killed by the daemon.
func waitSettled(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(listInFlight(t, addr)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("uploads still in flight 30s after their clients stopped: %+v", listInFlight(t, addr))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// offlineScrub runs `glimpse scrub --data` on a stopped daemon's data (and
// registry, with --registry in extra): the registry must open cleanly and
// hold no problem.
func offlineScrub(t *testing.T, data string, extra ...string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, append([]string{"scrub", "--data", data}, extra...)...)
	cmd.Env = append(os.Environ(), "GLIMPSE_RUN_MAIN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("glimpse scrub --data hung:\n%s", out.String())
	}
	if err != nil {
		t.Fatalf("glimpse scrub --data %s: %v\n%s", data, err, out.String())
	}
	return out.String()
}

// testRegistry is the registry engine a crash or soak test's daemon runs
// on: badger under its --data, or a real etcd (one member: these tests are
// about one daemon's crashes and resources, not the cluster's faults,
// which shared_test.go covers on three).
type testRegistry struct {
	name string
	args []string // for serve and scrub: --registry and its lease
	etcd *kvtest.Etcd
	// lease is the daemon's --registry-lease on etcd: the shortest etcd
	// grants, so that a killed daemon's lease ends soon.
	lease time.Duration
}

func badgerRegistry() testRegistry { return testRegistry{name: "badger"} }

// etcdRegistry starts a single-member etcd for the test; prefix keeps the
// test's catalogue apart.
func etcdRegistry(t *testing.T, prefix string) testRegistry {
	t.Helper()
	e := kvtest.StartEtcd(t, 1)
	const lease = 2 * time.Second
	return testRegistry{name: "etcd", etcd: e, lease: lease,
		args: []string{"--registry", e.URL(prefix), "--registry-lease", lease.String()}}
}

// serveArgs are the serve flags for this registry, then extra.
func (r testRegistry) serveArgs(extra ...string) []string {
	return append(slices.Clone(r.args), extra...)
}

// scrubArgs are the flags `glimpse scrub --data` needs besides --data.
func (r testRegistry) scrubArgs() []string {
	if r.etcd == nil {
		return nil
	}
	return r.args[:2] // --registry URL: scrub has no lease of its own
}

// waitLeasesGone returns once no daemon holds a lease on the registry: on
// etcd a SIGKILLed daemon's lease outlives it by up to its ttl, and until
// it expires the daemon's uploads are not a restarted daemon's to settle
// (badger has no leases: its lock died with the process).
func (r testRegistry) waitLeasesGone(t *testing.T, prefix string) time.Duration {
	t.Helper()
	if r.etcd == nil {
		return 0
	}
	start := time.Now()
	for r.etcd.Count(t, "/"+prefix+"/d/") > 0 {
		if time.Since(start) > 3*r.lease {
			t.Fatalf("a killed daemon's lease still held %v after its death (lease %v)", time.Since(start), r.lease)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}
