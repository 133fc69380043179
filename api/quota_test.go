package api_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/lifecycle"
)

// TestQuotas: per-project limits on images, uploads in flight and bytes,
// through REST: 413 with Glance's messages, the refused upload killed with
// the reason and nothing of it stored, other projects unaffected.
func TestQuotas(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {
		"t1": {"project": "p1", "roles": ["member"]},
		"t2": {"project": "p2", "roles": ["member"]},
		"ta": {"project": "p1", "roles": ["admin"]}}}`), 0o600)
	const quotaBytes = 1 << 20
	e, lt := hostileEnv(t, lifecycle.Config{Quota: lifecycle.Quota{Images: 3, Bytes: quotaBytes}}, api.Options{AuthTokens: tokens})
	as := func(tok string) map[string]string {
		return map[string]string{"X-Auth-Token": tok, "Content-Type": "application/json", "Accept": "application/json"}
	}
	create := func(tok, name string) reply {
		return e.do("POST", "/v2/images", as(tok), strings.NewReader(`{"name": "`+name+`", "disk_format": "raw", "container_format": "bare"}`))
	}
	upload := func(tok, id string, n int) reply {
		h := as(tok)
		h["Content-Type"] = "application/octet-stream"
		return e.do("PUT", "/v2/images/"+id+"/file", h, bytes.NewReader(make([]byte, n)))
	}
	show := func(id string) map[string]any {
		return e.do("GET", "/v2/images/"+id, as("ta"), nil).json(t)
	}

	var ids []string
	for i := 0; i < 3; i++ {
		r := create("t1", fmt.Sprint("img", i))
		if r.status != 201 {
			t.Fatalf("create %d: %d %s", i, r.status, r.body)
		}
		ids = append(ids, r.json(t)["id"].(string))
	}
	before := snapshot(t, e.svc)
	glanceError(t, "fourth image of p1", create("t1", "img3"), 413, "Resource image_count_total is over limit of 3 due to current usage 3 and delta 1")
	glanceError(t, "fourth image of p1, as its admin", create("ta", "img3"), 413, "image_count_total")
	if snapshot(t, e.svc) != before {
		t.Fatal("a create refused for quota changed the registry")
	}
	if r := create("t2", "other"); r.status != 201 {
		t.Fatalf("another project is not held by p1's quota: %d %s", r.status, r.body)
	}

	// Bytes: the first upload fits, the second crosses the quota mid-stream.
	if r := upload("t1", ids[0], 600<<10); r.status != 204 {
		t.Fatalf("upload within the quota: %d %s", r.status, r.body)
	}
	glanceError(t, "upload crossing the byte quota", upload("t1", ids[1], 600<<10), 413, "will exceed the limit")
	v := show(ids[1])
	if v["status"] != "killed" || !strings.Contains(fmt.Sprint(v["glimpse.error"]), "bytes remaining") {
		t.Fatalf("over-quota upload: %v %v", v["status"], v["glimpse.error"])
	}
	if keys := storeKeys(t, lt); len(keys) != 1 || keys[0] != ids[0] {
		t.Fatalf("store after the refused upload: %v, want only %s", keys, ids[0])
	}
	// Exactly what is left fits.
	if r := upload("t1", ids[2], quotaBytes-600<<10); r.status != 204 {
		t.Fatalf("upload of exactly the bytes left: %d %s", r.status, r.body)
	}
	// Quota full: p2 still uploads.
	p2 := create("t2", "p2img").json(t)["id"].(string)
	if r := upload("t2", p2, 600<<10); r.status != 204 {
		t.Fatalf("p2 upload: %d %s", r.status, r.body)
	}
	// Deleting frees both image slots and bytes.
	for _, id := range ids[:2] {
		if r := e.do("DELETE", "/v2/images/"+id, as("t1"), nil); r.status != 204 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
	}
	again := create("t1", "again")
	if again.status != 201 {
		t.Fatalf("create after deleting: %d %s", again.status, again.body)
	}
	againID := again.json(t)["id"].(string)
	if r := upload("t1", againID, 600<<10); r.status != 204 {
		t.Fatalf("upload after deleting: %d %s", r.status, r.body)
	}
	// With no byte left, an upload is refused before it starts: the image
	// stays queued, as in Glance.
	full := create("t1", "full").json(t)["id"].(string)
	glanceError(t, "upload with the byte quota used up", upload("t1", full, 1), 413, "image_size_total is over limit")
	if v := show(full); v["status"] != "queued" {
		t.Fatalf("image refused at the start of its upload: %v", v["status"])
	}
	if r := e.do("DELETE", "/v2/images/"+full, as("t1"), nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", "/v2/images/"+againID, as("t1"), nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}

	// glance-direct staging counts against the same bytes.
	staged := create("t1", "staged").json(t)["id"].(string)
	h := as("t1")
	h["Content-Type"] = "application/octet-stream"
	r := e.do("PUT", "/v2/images/"+staged+"/stage", h, bytes.NewReader(make([]byte, 700<<10)))
	glanceError(t, "staging past the byte quota", r, 413, "will exceed the limit")
	if keys := storeKeys(t, lt); len(keys) != 2 {
		t.Fatalf("store after the refused stage: %v", keys)
	}
}

// TestQuotaUploadsInFlight: image_count_uploading refuses a second
// concurrent upload and leaves that image queued, as Glance does.
func TestQuotaUploadsInFlight(t *testing.T) {
	e, _ := hostileEnv(t, lifecycle.Config{Quota: lifecycle.Quota{Uploading: 1}}, api.Options{})
	first := e.create(`{"name": "first", "disk_format": "raw", "container_format": "bare"}`)["id"].(string)
	second := e.create(`{"name": "second", "disk_format": "raw", "container_format": "bare"}`)["id"].(string)
	host := strings.TrimPrefix(e.url, "http://")
	conn := dialRaw(t, e, 30*time.Second)
	fmt.Fprintf(conn, "PUT /v2/images/%s/file HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n0123456789", first, host)
	waitStatusIs(t, e, first, "saving")
	r := e.do("PUT", "/v2/images/"+second+"/file", map[string]string{"Content-Type": "application/octet-stream", "Accept": "application/json"}, strings.NewReader("x"))
	glanceError(t, "second upload in flight", r, 413, "image_count_uploading is over limit of 1")
	if v := e.do("GET", "/v2/images/"+second, nil, nil).json(t); v["status"] != "queued" {
		t.Fatalf("the refused image is %v, want queued", v["status"])
	}
	fmt.Fprint(conn, strings.Repeat("x", 90))
	waitStatusIs(t, e, first, "active")
	if r := e.upload(second, []byte("now")); r.status != 204 {
		t.Fatalf("upload once the first is done: %d %s", r.status, r.body)
	}
}
