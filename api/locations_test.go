package api_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	httpstore "github.com/glimpse-project/glimpse/backend/http"
	"github.com/glimpse-project/glimpse/backend/local"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
)

// newLocationEnv is a listener whose lifecycle reads HTTP locations
// (loopback allowed), with two tokens: "adm" (admin) and "p2" (a member
// of another project).
func newLocationEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	db, err := badgerkv.Open(filepath.Join(dir, "registry"), log)
	if err != nil {
		t.Fatal(err)
	}
	store, err := meta.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	be, err := local.Open(local.Config{Dir: filepath.Join(dir, "images")})
	if err != nil {
		t.Fatal(err)
	}
	locs, err := httpstore.Open(httpstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	svc := lifecycle.New(lifecycle.Config{Store: store, Backend: be, Locations: locs})
	tokens := filepath.Join(dir, "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {"adm": {"project": "admin", "roles": ["admin"]}, "p2": {"project": "p2", "roles": ["member"]}}}`), 0o600)
	s, err := api.New(svc, api.Options{AuthTokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	s.SetReady(true)
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close(); svc.Shutdown(t.Context()); locs.Close(); db.Close() })
	return &env{t: t, url: srv.URL, svc: svc}
}

const jsonPatch = "application/openstack-images-v2.1-json-patch"

func (e *env) patchAs(token, id, body string) reply {
	e.t.Helper()
	return e.do("PATCH", "/v2/images/"+id, map[string]string{"X-Auth-Token": token, "Content-Type": jsonPatch, "Accept": "application/json"}, strings.NewReader(body))
}

func TestLocationsPatch(t *testing.T) {
	t.Parallel()
	e := newLocationEnv(t)
	web := backendtest.NewWebOrigin(t)
	data := make([]byte, 1<<20+3)
	rand.Read(data)
	url := web.Put("/disk.raw", data)
	adm := map[string]string{"X-Auth-Token": "adm"}

	r := e.do("POST", "/v2/images", map[string]string{"X-Auth-Token": "adm"}, strings.NewReader(`{"name": "remote", "visibility": "public"}`))
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)

	// A URL that does not answer is refused with 400; the image stays queued.
	r = e.patchAs("adm", id, `[{"op": "add", "path": "/locations/-", "value": {"url": "`+web.URL+`/missing", "metadata": {}}}]`)
	if r.status != http.StatusBadRequest {
		t.Fatalf("add a 404 location: %d %s", r.status, r.body)
	}
	for _, bad := range []string{
		`[{"op": "add", "path": "/locations/x", "value": {"url": "` + url + `", "metadata": {}}}]`,
		`[{"op": "add", "path": "/locations/-", "value": {"metadata": {}}}]`,
		`[{"op": "add", "path": "/locations/-", "value": {"url": "` + url + `"}}]`,
		`[{"op": "add", "path": "/locations/-", "value": {"url": "` + url + `", "metadata": {}, "validation_data": {"sha": "x"}}}]`,
		`[{"op": "replace", "path": "/locations/0", "value": []}]`,
	} {
		if r := e.patchAs("adm", id, bad); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
		}
	}
	if v := e.do("GET", "/v2/images/"+id, adm, nil).json(t); v["status"] != "queued" || len(v["locations"].([]any)) != 0 {
		t.Fatalf("after refused adds: %v", v)
	}

	// glanceclient's location-add.
	r = e.patchAs("adm", id, `[{"op": "add", "path": "/locations/-", "value": {"url": "`+url+`", "metadata": {"mirror": "eu"}}}]`)
	if r.status != http.StatusOK {
		t.Fatalf("add location: %d %s", r.status, r.body)
	}
	v := r.json(t)
	if v["status"] != "active" || v["size"] != float64(len(data)) || v["disk_format"] != "raw" || v["direct_url"] != url {
		t.Fatalf("after add: %v", v)
	}
	if locs := fmt.Sprint(v["locations"]); locs != fmt.Sprintf("[map[metadata:map[mirror:eu] url:%s]]", url) {
		t.Fatalf("locations: %s", locs)
	}
	// Another project sees the public image, not where it lives.
	other := e.do("GET", "/v2/images/"+id, map[string]string{"X-Auth-Token": "p2"}, nil).json(t)
	if _, ok := other["locations"]; ok || other["direct_url"] != nil || other["status"] != "active" {
		t.Fatalf("another project's view: %v", other)
	}
	if r := e.do("GET", "/v2/images/"+id+"/locations", map[string]string{"X-Auth-Token": "p2"}, nil); r.status != http.StatusForbidden {
		t.Fatalf("another project's GET locations: %d", r.status)
	}

	// Downloads are served from the URL, ranges included.
	if r := e.do("GET", "/v2/images/"+id+"/file", map[string]string{"X-Auth-Token": "p2"}, nil); r.status != 200 || !bytes.Equal(r.body, data) {
		t.Fatalf("download: %d, %d bytes", r.status, len(r.body))
	}
	if r := e.do("GET", "/v2/images/"+id+"/file", map[string]string{"X-Auth-Token": "adm", "Range": "bytes=1000-1999"}, nil); r.status != 206 || !bytes.Equal(r.body, data[1000:2000]) {
		t.Fatalf("ranged download: %d %q", r.status, r.body)
	}

	// The last location stays; metadata may change; nothing else may.
	if r := e.patchAs("adm", id, `[{"op": "remove", "path": "/locations/0"}]`); r.status != http.StatusForbidden {
		t.Fatalf("remove the last location: %d %s", r.status, r.body)
	}
	if r := e.patchAs("adm", id, `[{"op": "replace", "path": "/locations", "value": []}]`); r.status != http.StatusForbidden {
		t.Fatalf("replace with none: %d %s", r.status, r.body)
	}
	if r := e.patchAs("adm", id, `[{"op": "add", "path": "/locations/-", "value": {"url": "`+url+`", "metadata": {}}}]`); r.status != http.StatusForbidden {
		t.Fatalf("a second location: %d %s", r.status, r.body)
	}
	r = e.patchAs("adm", id, `[{"op": "replace", "path": "/locations", "value": [{"url": "`+url+`", "metadata": {"mirror": "us"}}]}, {"op": "add", "path": "/os_distro", "value": "debian"}]`)
	if v := r.json(t); r.status != 200 || fmt.Sprint(v["locations"]) != fmt.Sprintf("[map[metadata:map[mirror:us] url:%s]]", url) || v["os_distro"] != "debian" {
		t.Fatalf("location-update: %d %s", r.status, r.body)
	}
	if r := e.patchAs("p2", id, `[{"op": "replace", "path": "/locations", "value": [{"url": "`+url+`", "metadata": {}}]}]`); r.status != http.StatusForbidden {
		t.Fatalf("another project's location-update: %d %s", r.status, r.body)
	}

	// The URL goes away: downloads answer 503, the listener serves on.
	web.Remove("/disk.raw")
	if r := e.do("GET", "/v2/images/"+id+"/file", adm, nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("download of a vanished location: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v2/images", adm, nil); r.status != 200 {
		t.Fatalf("list after a failed download: %d", r.status)
	}
	if r := e.do("DELETE", "/v2/images/"+id, adm, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
}

// Glance 2024.1's location API.
func TestLocationsPost(t *testing.T) {
	t.Parallel()
	e := newLocationEnv(t)
	web := backendtest.NewWebOrigin(t)
	data := make([]byte, 70000)
	rand.Read(data)
	url := web.Put("/disk.img", data)
	adm := map[string]string{"X-Auth-Token": "adm"}
	id := e.do("POST", "/v2/images", adm, strings.NewReader(`{"name": "posted", "disk_format": "raw", "container_format": "bare"}`)).json(t)["id"].(string)

	if r := e.do("POST", "/v2/images/"+id+"/locations", adm, strings.NewReader(`{"url": "`+url+`", "validation_data": {"os_hash_algo": "sha512"}}`)); r.status != http.StatusBadRequest {
		t.Fatalf("half validation_data: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v2/images/"+id+"/locations", adm, strings.NewReader(`{"url": "`+url+`"}`)); r.status != http.StatusAccepted {
		t.Fatalf("POST locations: %d %s", r.status, r.body)
	}
	r := e.do("GET", "/v2/images/"+id+"/locations", adm, nil)
	if r.status != 200 || strings.TrimSpace(string(r.body)) != `[{"metadata":{},"url":"`+url+`"}]` {
		t.Fatalf("GET locations: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v2/images/"+id+"/locations", adm, strings.NewReader(`{"url": "`+url+`"}`)); r.status != http.StatusForbidden {
		t.Fatalf("POST locations on an active image: %d %s", r.status, r.body)
	}
}
