package api_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/api"
)

// TestUploadsInFlightAreBounded: with --max-uploads 3, three uploads that
// stall after their first byte hold every slot; a fourth upload, a stage
// and a web-download answer 503 with Retry-After and change nothing; once
// one stalled upload ends, its slot serves the next upload.
func TestUploadsInFlightAreBounded(t *testing.T) {
	e := newEnv(t, 0, api.Options{MaxUploads: 3})
	var writers []*io.PipeWriter
	var stalled sync.WaitGroup
	codes := make([]int, 3)
	var ids []string
	for i := range 3 {
		id := e.create(`{"name": "stalled", "disk_format": "raw", "container_format": "bare"}`)["id"].(string)
		ids = append(ids, id)
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		stalled.Go(func() {
			codes[i] = e.do("PUT", "/v2/images/"+id+"/file", map[string]string{"Content-Type": "application/octet-stream"}, pr).status
		})
		pw.Write([]byte("x"))
	}
	for _, id := range ids {
		e.waitFor(id, "saving")
	}
	octet := map[string]string{"Content-Type": "application/octet-stream", "Accept": "application/json"}
	more := e.create(`{"name": "more", "disk_format": "raw", "container_format": "bare"}`)["id"].(string)
	for _, c := range []struct{ what, method, path, body string }{
		{"a fourth upload", "PUT", "/v2/images/" + more + "/file", "data"},
		{"a stage", "PUT", "/v2/images/" + more + "/stage", "data"},
		{"a web-download", "POST", "/v2/images/" + more + "/import", `{"method": {"name": "web-download", "uri": "http://example.com/x"}}`},
	} {
		r := e.do(c.method, c.path, octet, strings.NewReader(c.body))
		glanceError(t, c.what, r, http.StatusServiceUnavailable, "Too many uploads")
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", c.what)
		}
	}
	if v := e.do("GET", "/v2/images/"+more, nil, nil).json(t); v["status"] != "queued" {
		t.Fatalf("the refused image: %v", v["status"])
	}
	writers[0].Close()
	e.waitFor(ids[0], "active")
	// The handler gives its slot back just after the image becomes
	// active (and its 204 may reach the client first): retry briefly.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := e.upload(more, []byte("data"))
		if r.status == 204 {
			break
		}
		if r.status != 503 || time.Now().After(deadline) {
			t.Fatalf("upload after a slot freed: %d %s", r.status, r.body)
		}
		time.Sleep(time.Millisecond)
	}
	for _, w := range writers[1:] {
		w.Close()
	}
	stalled.Wait()
	if codes[0] != 204 || codes[1] != 204 || codes[2] != 204 {
		t.Fatalf("stalled uploads ended %v", codes)
	}
}

// waitFor polls the image until it has status want, with a deadline.
func (e *env) waitFor(id, want string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := e.do("GET", "/v2/images/"+id, nil, nil).json(e.t)
		if v["status"] == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("image %s is %v after 10s, want %s", id, v["status"], want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
