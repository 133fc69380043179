package api_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/policy"
)

// policyEnv serves REST with a token file of Glance's personas and the
// given policy: "adm" an admin, "mem"/"rdr" a member/reader of p1, "oth" a
// member of p2.
func policyEnv(t *testing.T, pol *policy.Enforcer) *env {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {
		"adm": {"project": "admin", "roles": ["admin"]},
		"mem": {"project": "p1", "roles": ["member"]},
		"rdr": {"project": "p1", "roles": ["reader"]},
		"oth": {"project": "p2", "roles": ["member"]}}}`), 0o600)
	e, _ := hostileEnv(t, lifecycle.Config{Policy: pol}, api.Options{AuthTokens: tokens})
	return e
}

// as sends a request as token and returns the reply; Accept is JSON so
// that refusals carry their message as "message".
func (e *env) as(token, method, path, body string) reply {
	e.t.Helper()
	hdr := map[string]string{"X-Auth-Token": token, "Accept": "application/json"}
	switch {
	case method == "PATCH":
		hdr["Content-Type"] = jsonPatch
	case method == "PUT" && (strings.HasSuffix(path, "/file") || strings.HasSuffix(path, "/stage")):
		hdr["Content-Type"] = "application/octet-stream"
	case body != "":
		hdr["Content-Type"] = "application/json"
	}
	var r reply
	if body == "" {
		r = e.do(method, path, hdr, nil)
	} else {
		r = e.do(method, path, hdr, strings.NewReader(body))
	}
	return r
}

func (e *env) createAs(token, body string) map[string]any {
	e.t.Helper()
	r := e.as(token, "POST", "/v2/images", body)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create %s as %s: %d %s", body, token, r.status, r.body)
	}
	return r.json(e.t)
}

func TestDefaultPolicyREST(t *testing.T) {
	e := policyEnv(t, nil)

	// Owner: an admin may give an image to another project, on create and
	// on update; a member may not, with Glance's messages.
	img := e.createAs("adm", `{"name": "given", "owner": "p1", "disk_format": "raw", "container_format": "bare"}`)
	if img["owner"] != "p1" {
		t.Fatalf("admin create with owner p1: owner %v", img["owner"])
	}
	id := img["id"].(string)
	glanceError(t, "member creating for p2", e.as("mem", "POST", "/v2/images", `{"name": "x", "owner": "p2"}`), 403, "You are not permitted to create images owned by 'p2'.")
	if r := e.as("mem", "POST", "/v2/images", `{"name": "mine", "owner": "p1"}`); r.status != 201 {
		t.Errorf("member creating for its own project: %d %s", r.status, r.body)
	}
	glanceError(t, "member changing the owner", e.as("mem", "PATCH", "/v2/images/"+id, `[{"op": "replace", "path": "/owner", "value": "p2"}]`), 403, "Owner can't be updated by non admin.")
	if r := e.as("adm", "PATCH", "/v2/images/"+id, `[{"op": "replace", "path": "/owner", "value": "p2"}]`); r.status != 200 || r.json(t)["owner"] != "p2" {
		t.Fatalf("admin changing the owner: %d %s", r.status, r.body)
	}
	if r := e.as("mem", "GET", "/v2/images/"+id, ""); r.status != 404 {
		t.Errorf("p1 sees the image it no longer owns: %d", r.status)
	}
	if r := e.as("adm", "PATCH", "/v2/images/"+id, `[{"op": "add", "path": "/owner", "value": "p1"}]`); r.status != 200 || r.json(t)["owner"] != "p1" {
		t.Fatalf("admin giving the image back: %d %s", r.status, r.body)
	}

	// Readers read, members write.
	glanceError(t, "reader creating", e.as("rdr", "POST", "/v2/images", `{"name": "x"}`), 403, "add_image")
	if r := e.as("rdr", "GET", "/v2/images/"+id, ""); r.status != 200 {
		t.Errorf("reader showing its project's image: %d", r.status)
	}
	if r := e.as("mem", "PUT", "/v2/images/"+id+"/file", "some raw bytes"); r.status != 204 {
		t.Fatalf("member uploading: %d %s", r.status, r.body)
	}
	glanceError(t, "reader downloading", e.as("rdr", "GET", "/v2/images/"+id+"/file", ""), 403, "download_image")
	glanceError(t, "reader renaming", e.as("rdr", "PATCH", "/v2/images/"+id, `[{"op": "replace", "path": "/name", "value": "r"}]`), 403, "modify_image")
	if r := e.as("oth", "GET", "/v2/images/"+id, ""); r.status != 404 {
		t.Errorf("another project sees a shared image it is no member of: %d", r.status)
	}

	// Deactivation: the owner's members may (Glance's default), its
	// readers and other projects not; a deactivated image's data is for
	// admins only.
	glanceError(t, "reader deactivating", e.as("rdr", "POST", "/v2/images/"+id+"/actions/deactivate", ""), 403, "deactivate")
	if r := e.as("mem", "POST", "/v2/images/"+id+"/actions/deactivate", ""); r.status != 204 {
		t.Fatalf("member deactivating its project's image: %d %s", r.status, r.body)
	}
	glanceError(t, "member downloading deactivated", e.as("mem", "GET", "/v2/images/"+id+"/file", ""), 403, "The requested image has been deactivated. Image data download is forbidden.")
	if r := e.as("adm", "GET", "/v2/images/"+id+"/file", ""); r.status != 200 || string(r.body) != "some raw bytes" {
		t.Errorf("admin downloading deactivated: %d %q", r.status, r.body)
	}
	if r := e.as("mem", "POST", "/v2/images/"+id+"/actions/reactivate", ""); r.status != 204 {
		t.Fatalf("member reactivating: %d %s", r.status, r.body)
	}
	if r := e.as("mem", "GET", "/v2/images/"+id+"/file", ""); r.status != 200 {
		t.Errorf("member downloading reactivated: %d %s", r.status, r.body)
	}

	// Publicizing is the admin's; a public image is everyone's to read,
	// its owner's to change.
	glanceError(t, "member publicizing", e.as("mem", "PATCH", "/v2/images/"+id, `[{"op": "replace", "path": "/visibility", "value": "public"}]`), 403, "publicize_image")
	glanceError(t, "member creating public", e.as("mem", "POST", "/v2/images", `{"name": "x", "visibility": "public"}`), 403, "publicize_image")
	if r := e.as("mem", "PATCH", "/v2/images/"+id, `[{"op": "replace", "path": "/visibility", "value": "community"}]`); r.status != 200 {
		t.Errorf("member communitizing: %d %s", r.status, r.body)
	}
	if r := e.as("adm", "PATCH", "/v2/images/"+id, `[{"op": "replace", "path": "/visibility", "value": "public"}]`); r.status != 200 {
		t.Fatalf("admin publicizing: %d %s", r.status, r.body)
	}
	if r := e.as("oth", "GET", "/v2/images/"+id+"/file", ""); r.status != 200 {
		t.Errorf("another project downloading a public image: %d", r.status)
	}
	glanceError(t, "another project deactivating", e.as("oth", "POST", "/v2/images/"+id+"/actions/deactivate", ""), 403, "deactivate")
	glanceError(t, "another project deleting", e.as("oth", "DELETE", "/v2/images/"+id, ""), 403, "delete_image")

	// Locations: GET .../locations is the service's and the admin's.
	glanceError(t, "member fetching locations", e.as("mem", "GET", "/v2/images/"+id+"/locations", ""), 403, "fetch_image_location")
	if r := e.as("adm", "GET", "/v2/images/"+id+"/locations", ""); r.status != 200 {
		t.Errorf("admin fetching locations: %d %s", r.status, r.body)
	}
	if r := e.as("mem", "DELETE", "/v2/images/"+id, ""); r.status != 204 {
		t.Errorf("member deleting its project's image: %d %s", r.status, r.body)
	}
}

// A policy file changes REST answers end to end.
func TestPolicyOverridesREST(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(file, []byte(`# the operator's changes
"publicize_image": "role:member"
"delete_image": "!"
"get_images": "rule:context_is_admin"
`), 0o600)
	pol, err := policy.LoadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	e := policyEnv(t, pol)
	id := e.createAs("mem", `{"name": "pub", "visibility": "public"}`)["id"].(string)
	if r := e.as("oth", "GET", "/v2/images/"+id, ""); r.status != 200 {
		t.Errorf("the member's public image is not public: %d", r.status)
	}
	before := snapshot(t, e.svc)
	glanceError(t, "admin deleting under delete_image: !", e.as("adm", "DELETE", "/v2/images/"+id, ""), 403, "delete_image")
	glanceError(t, "member deleting under delete_image: !", e.as("mem", "DELETE", "/v2/images/"+id, ""), 403, "delete_image")
	if after := snapshot(t, e.svc); after != before {
		t.Errorf("a refused delete changed the registry:\n%s\n%s", before, after)
	}
	glanceError(t, "member listing under get_images: admins", e.as("mem", "GET", "/v2/images", ""), 403, "get_images")
	if r := e.as("adm", "GET", "/v2/images", ""); r.status != 200 || !strings.Contains(string(r.body), id) {
		t.Errorf("admin listing: %d %s", r.status, r.body)
	}
	// The same requests under Glance's defaults.
	d := policyEnv(t, nil)
	glanceError(t, "member publicizing by default", d.as("mem", "POST", "/v2/images", `{"name": "pub", "visibility": "public"}`), 403, "publicize_image")
	id = d.createAs("mem", `{"name": "x"}`)["id"].(string)
	if r := d.as("mem", "GET", "/v2/images", ""); r.status != 200 || !strings.Contains(string(r.body), id) {
		t.Errorf("member listing by default: %d %s", r.status, r.body)
	}
	if r := d.as("mem", "DELETE", "/v2/images/"+id, ""); r.status != 204 {
		t.Errorf("member deleting by default: %d", r.status)
	}
}
