package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// metricValue finds the sample `name{labels} value` in a Prometheus text
// exposition (labels as the exposition writes them: sorted, quoted; ""
// for none) and returns its value, or -1 when it is absent.
func metricValue(exposition, name, labels string) float64 {
	series := name
	if labels != "" {
		series += "{" + labels + "}"
	}
	sc := bufio.NewScanner(strings.NewReader(exposition))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				return -1
			}
			return v
		}
	}
	return -1
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	return string(body)
}

// TestMetricsAndAccessLog drives the daemon through both faces (a cp into
// the mount, a refused mkdir, a REST upload and download) and checks that
// /metrics counted each, and that the JSON access log has one line per
// REST request carrying the id the response carried, the caller's project,
// and never its token.
func TestMetricsAndAccessLog(t *testing.T) {
	needMount(t)
	dir := t.TempDir()
	const token = "s3cret-token-value"
	tokens := filepath.Join(dir, "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {"`+token+`": {"project": "p1", "roles": ["admin"]}}}`), 0o600)
	d := startDaemon(t, filepath.Join(dir, "data"), filepath.Join(dir, "mnt"), "--log-format", "json", "--auth-tokens", tokens)

	before := scrape(t, d.addr)
	if v := metricValue(before, "glimpse_images", `status="active"`); v != 0 {
		t.Fatalf("fresh daemon: glimpse_images{active} = %v, want 0", v)
	}

	// The mount: a copy in, and a refused mkdir.
	copied := make([]byte, 3<<20+17)
	rand.Read(copied)
	src := filepath.Join(dir, "copied.raw")
	os.WriteFile(src, copied, 0o600)
	if out, err := exec.Command("cp", src, filepath.Join(d.mnt, "active")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if err := os.Mkdir(filepath.Join(d.mnt, "active", "nodir"), 0o755); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("mkdir in the mount: %v, want EPERM", err)
	}

	// REST: create, upload, download.
	call := func(method, path, ct string, body io.Reader, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+d.addr+path, body)
		req.Header.Set("X-Auth-Token", token)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := call("POST", "/v2/images", "application/json", strings.NewReader(`{"name": "rest.raw", "disk_format": "raw", "container_format": "bare"}`))
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var img struct{ ID string }
	json.Unmarshal(body, &img)
	uploaded := make([]byte, 1<<20+5)
	rand.Read(uploaded)
	if resp, body := call("PUT", "/v2/images/"+img.ID+"/file", "application/octet-stream", bytes.NewReader(uploaded)); resp.StatusCode != 204 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	const callerID = "req-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	resp, body = call("GET", "/v2/images/"+img.ID+"/file", "", nil, "X-Openstack-Request-Id", callerID)
	if resp.StatusCode != 200 || !bytes.Equal(body, uploaded) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(body))
	}
	downloadID := resp.Header.Get("X-Openstack-Request-Id")
	if !strings.HasPrefix(downloadID, "req-") || downloadID == callerID {
		t.Fatalf("response request id %q: want our own req-UUID", downloadID)
	}

	m := scrape(t, d.addr)
	total := float64(len(copied) + len(uploaded))
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"glimpse_images", `status="active"`, 2},
		{"glimpse_image_bytes", `status="active"`, total},
		{"glimpse_uploads_total", `outcome="active"`, 2},
		{"glimpse_upload_bytes_total", `outcome="active"`, total},
		{"glimpse_upload_duration_seconds_count", `outcome="active"`, 2},
		{"glimpse_download_bytes_total", ``, float64(len(uploaded))},
		{"glimpse_download_duration_seconds_count", ``, 1},
		{"glimpse_http_requests_total", `code="201",route="POST /v2/images"`, 1},
		{"glimpse_http_requests_total", `code="204",route="PUT /v2/images/{id}/file"`, 1},
		{"glimpse_fuse_errors_total", `errno="EPERM",op="mkdir"`, 1},
		{"glimpse_fuse_write_bytes_total", ``, float64(len(copied))},
		{"glimpse_store_request_duration_seconds_count", `op="commit",store="file"`, 2},
	} {
		if got := metricValue(m, c.name, c.labels); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := metricValue(m, "glimpse_fuse_operations_total", `op="create"`); got < 1 {
		t.Errorf("glimpse_fuse_operations_total{create} = %v, want at least 1", got)
	}

	d.stop() // the log is complete (and no longer written) once it exits
	log := d.log.String()
	if strings.Contains(log, token) {
		t.Error("the log contains the auth token")
	}
	var found bool
	for _, line := range strings.Split(log, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			if strings.TrimSpace(line) != "" {
				t.Errorf("a log line that is not JSON: %q", line)
			}
			continue
		}
		if rec["request_id"] != downloadID {
			continue
		}
		if found {
			t.Errorf("request %s logged twice", downloadID)
		}
		found = true
		want := map[string]any{"msg": "request", "method": "GET", "path": "/v2/images/" + img.ID + "/file",
			"status": float64(200), "bytes": float64(len(uploaded)), "project": "p1", "global_request_id": callerID}
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("access log %s = %v, want %v (line %s)", k, rec[k], v, line)
			}
		}
	}
	if !found {
		t.Errorf("no access log line with request_id %s:\n%s", downloadID, log)
	}
}
