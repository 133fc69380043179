package main

import (
	"bytes"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rest is a bare Glance v2 client for the daemon tests: each call returns
// the status and the body, so tests can check Glance's error bodies too.
type rest struct {
	t    *testing.T
	base string // http://HOST:PORT
}

func (r rest) do(method, path, ct string, body io.Reader) (int, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.base+path, body)
	if err != nil {
		r.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// create makes a queued raw image named name and returns its id.
func (r rest) create(name string) string {
	r.t.Helper()
	st, body := r.do("POST", "/v2/images", "application/json",
		strings.NewReader(`{"name": "`+name+`", "disk_format": "raw", "container_format": "bare"}`))
	if st != http.StatusCreated {
		r.t.Fatalf("create %s: %d %s", name, st, body)
	}
	return r.decode(body)["id"].(string)
}

func (r rest) image(id string) map[string]any {
	r.t.Helper()
	st, body := r.do("GET", "/v2/images/"+id, "", nil)
	if st != http.StatusOK {
		r.t.Fatalf("show %s: %d %s", id, st, body)
	}
	return r.decode(body)
}

func (r rest) upload(id string, body io.Reader) (int, []byte) {
	r.t.Helper()
	return r.do("PUT", "/v2/images/"+id+"/file", "application/octet-stream", body)
}

func (r rest) decode(body []byte) map[string]any {
	r.t.Helper()
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		r.t.Fatalf("not JSON: %v: %s", err, body)
	}
	return v
}

// waitSaving waits until image id is saving: the daemon has begun taking
// its upload, so a fault injected now lands in the middle of it.
func (r rest) waitSaving(id string) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.image(id)["status"] != "saving" {
		if time.Now().After(deadline) {
			r.t.Fatalf("image %s never reached saving: %v", id, r.image(id))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantGlanceError checks a Glance error answer: the status, and the flat
// JSON body webob gives for Accept: application/json, whose message says
// want.
func (r rest) wantGlanceError(op string, st int, body []byte, wantStatus int, want string) {
	r.t.Helper()
	if st != wantStatus {
		r.t.Fatalf("%s: status %d, want %d (%s)", op, st, wantStatus, body)
	}
	v := r.decode(body)
	if code, want := v["code"], fmt.Sprintf("%d %s", wantStatus, http.StatusText(wantStatus)); code != want {
		r.t.Errorf("%s: error body code %q, want %q", op, code, want)
	}
	if msg, _ := v["message"].(string); !strings.Contains(msg, want) {
		r.t.Errorf("%s: error message %q, want it to say %q", op, msg, want)
	}
}

// restRoundTrip is storeRoundTrip's REST half: create, upload, check the
// hashes Glance clients verify, download, delete. check (if not nil) sees
// the store with the image's id after the upload and with "" after the
// delete.
func restRoundTrip(t *testing.T, addr string, content []byte, check func(id string)) {
	t.Helper()
	r := rest{t: t, base: "http://" + addr}
	id := r.create("rest.img")
	if st, body := r.upload(id, bytes.NewReader(content)); st != http.StatusNoContent {
		t.Fatalf("upload: %d %s", st, body)
	}
	img := r.image(id)
	md := md5.Sum(content)
	sha := sha512.Sum512(content)
	if img["status"] != "active" || img["size"] != float64(len(content)) ||
		img["checksum"] != hex.EncodeToString(md[:]) || img["os_hash_value"] != hex.EncodeToString(sha[:]) {
		t.Fatalf("uploaded through REST: %v", img)
	}
	if check != nil {
		check(id)
	}
	st, got := r.do("GET", "/v2/images/"+id+"/file", "", nil)
	if st != http.StatusOK || !bytes.Equal(got, content) {
		t.Fatalf("download: %d, %d bytes, equal %v", st, len(got), bytes.Equal(got, content))
	}
	if st, body := r.do("DELETE", "/v2/images/"+id, "", nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d %s", st, body)
	}
	if st, _ := r.do("GET", "/v2/images/"+id, "", nil); st != http.StatusNotFound {
		t.Fatalf("after delete: %d", st)
	}
	if check != nil {
		check("")
	}
}
