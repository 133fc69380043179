package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/lifecycletest"
	"github.com/glimpse-project/glimpse/meta"
)

// fuzzServer is the REST handler on a real lifecycle, shared by a fuzz
// run's iterations, with a count of committed registry changes: a refused
// request must commit none.
type fuzzServer struct {
	h       http.Handler
	svc     *lifecycle.Service
	changes atomic.Int64
}

func newFuzzServer(f *testing.F) *fuzzServer {
	lt := lifecycletest.New(f, lifecycle.Config{})
	s, err := api.New(lt.Service, api.Options{})
	if err != nil {
		f.Fatal(err)
	}
	fs := &fuzzServer{h: s, svc: lt.Service}
	f.Cleanup(lt.Service.Subscribe(func(meta.Event) { fs.changes.Add(1) }))
	return fs
}

// serve sends one request and checks what every answer must be: never a
// 5xx, a refusal in Glance's JSON error form that changed nothing.
func (fs *fuzzServer) serve(t *testing.T, method, path, contentType string, body []byte) *httptest.ResponseRecorder {
	before := fs.changes.Load()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	rec := httptest.NewRecorder()
	fs.h.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
	}
	if rec.Code >= 400 {
		var e struct{ Message, Code string }
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" || !strings.HasPrefix(e.Code, strconv.Itoa(rec.Code)+" ") {
			t.Fatalf("%d without Glance's error body: %s", rec.Code, rec.Body)
		}
		if n := fs.changes.Load() - before; n != 0 {
			t.Fatalf("refused with %d, but %d changes were committed", rec.Code, n)
		}
	}
	return rec
}

// checkImage: whatever got in keeps Glance's limits.
func checkImage(t *testing.T, img *meta.Image) {
	if lifecycle.ValidName(img.Name) != nil {
		t.Fatalf("name %q got in", img.Name)
	}
	if len(img.Properties) > lifecycle.MaxProperties || len(img.Tags) > lifecycle.MaxTags {
		t.Fatalf("%d properties, %d tags got in", len(img.Properties), len(img.Tags))
	}
	for k, v := range img.Properties {
		if lifecycle.ValidKey(k) != nil || lifecycle.IsBaseKey(k) || len(v) > lifecycle.MaxValueLength || !utf8.ValidString(v) {
			t.Fatalf("property %q=%.40q got in", k, v)
		}
	}
	for _, tag := range img.Tags {
		if tag == "" || len(tag) > lifecycle.MaxTagLength || strings.Contains(tag, ",") || !utf8.ValidString(tag) {
			t.Fatalf("tag %q got in", tag)
		}
	}
	if img.MinDisk < 0 || img.MinRAM < 0 {
		t.Fatalf("min_disk %d, min_ram %d got in", img.MinDisk, img.MinRAM)
	}
}

// FuzzCreateBody: POST /v2/images with any body.
func FuzzCreateBody(f *testing.F) {
	for _, seed := range []string{
		`{"name": "x", "disk_format": "qcow2", "container_format": "bare", "min_ram": 512, "tags": ["a", "b"], "os_distro": "debian"}`,
		`{"name": null, "visibility": "private", "protected": true, "os_hidden": false, "min_disk": 0}`,
		`{"id": "11111111-2222-4333-8444-555555555555", "kernel_id": "11111111-2222-4333-8444-555555555556"}`,
		`{"owner": "admin", "a~b": "c", "": "", "size": 1}`,
		`{"tags": ["a,b"], "min_ram": 1e400, "name": "\u0000\ud800"}`,
		`[[[[]]]]`, `null`, `{} {}`, "{\"name\": \"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := s.serve(t, "POST", "/v2/images", "application/json", body)
		if rec.Code != http.StatusCreated {
			return
		}
		var v struct{ ID string }
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatalf("201 with %v: %s", err, rec.Body)
		}
		img, err := s.svc.Get(t.Context(), lifecycletest.Admin, v.ID)
		if err != nil {
			t.Fatalf("201 but image %s: %v", v.ID, err)
		}
		checkImage(t, img)
	})
}

// FuzzPatchBody: PATCH /v2/images/{id} with any JSON-patch body, on one
// image that accumulates what gets in.
func FuzzPatchBody(f *testing.F) {
	for _, seed := range []string{
		`[{"op": "replace", "path": "/name", "value": "y"}, {"op": "add", "path": "/os_distro", "value": "debian"}]`,
		`[{"op": "remove", "path": "/os_distro"}, {"op": "add", "path": "/a~0b~1c", "value": "x"}]`,
		`[{"op": "replace", "path": "/tags", "value": ["a", "b"]}, {"op": "replace", "path": "/min_ram", "value": 512}]`,
		`[{"op": "replace", "path": "/visibility", "value": "public"}, {"op": "replace", "path": "/protected", "value": true}]`,
		`[{"op": "add", "path": "/locations/0", "value": {"url": "file:///etc/passwd"}}]`,
		`[{"op": "replace", "path": "/status", "value": "active"}, {"op": "move", "from": "/a", "path": "/b"}]`,
		`[{"op": "add", "path": "/~2", "value": 1}, {"op": "add", "path": "/", "value": null}]`,
		`[{"op": "replace", "path": "/protected", "value": false}, {"op": "replace", "path": "/disk_format", "value": "vmdk"}]`,
		`[{"op": "replace", "path": "/owner", "value": "p2"}, {"op": "add", "path": "/owner", "value": ""}]`,
		`[null, 1, "x"]`, `{}`, `[[[[]]]]`,
	} {
		f.Add([]byte(seed))
	}
	s := newFuzzServer(f)
	img, err := s.svc.Create(f.Context(), lifecycletest.Admin, lifecycle.CreateSpec{Name: "fuzzed", DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := s.serve(t, "PATCH", "/v2/images/"+img.ID, "application/openstack-images-v2.1-json-patch", body)
		got, err := s.svc.Get(t.Context(), lifecycletest.Admin, img.ID)
		if err != nil {
			t.Fatalf("after %d: %v", rec.Code, err)
		}
		if got.Status != meta.Queued || got.ID != img.ID {
			t.Fatalf("a patch changed a read-only field: %+v", got)
		}
		// The caller is admin, who may change the owner: to a project id.
		if got.Owner == "" || lifecycle.ValidName(got.Owner) != nil {
			t.Fatalf("owner %q got in", got.Owner)
		}
		checkImage(t, got)
	})
}
