package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/lifecycletest"
	"github.com/glimpse-project/glimpse/meta"
)

// sharingEnv is a listener with --auth-tokens: the owner p1, the consumers
// p2 and p3, a reader of p2, and an admin.
func sharingEnv(t *testing.T) *env {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {
		"owner": {"project": "p1", "roles": ["member"]},
		"consumer": {"project": "p2", "roles": ["member"]},
		"consumer-reader": {"project": "p2", "roles": ["reader"]},
		"other": {"project": "p3", "roles": ["member"]},
		"admin": {"project": "admin", "roles": ["admin"]}}}`), 0o600)
	return newEnv(t, 0, api.Options{AuthTokens: tokens})
}

func expect(t *testing.T, what string, r reply, status int, message string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: %d %s, want %d", what, r.status, r.body, status)
	}
	if message != "" && !strings.Contains(string(r.body), message) {
		t.Fatalf("%s: body %s, want %q", what, r.body, message)
	}
	// Glance's messages stand alone, without glimpse's context before them.
	if r.status >= 400 {
		var e struct{ Message string }
		json.Unmarshal(r.body, &e)
		if strings.Contains(e.Message, ": Member") || strings.HasPrefix(e.Message, "add member") || strings.HasPrefix(e.Message, "update member") || strings.HasPrefix(e.Message, "delete member") {
			t.Fatalf("%s: message with glimpse's context: %q", what, e.Message)
		}
	}
}

func (e *env) imageAs(token, body string) string {
	e.t.Helper()
	r := e.as(token, "POST", "/v2/images", body)
	expect(e.t, "create", r, http.StatusCreated, "")
	return r.json(e.t)["id"].(string)
}

func listedIDs(t *testing.T, e *env, token, query string) []string {
	t.Helper()
	r := e.as(token, "GET", "/v2/images"+query, "")
	expect(t, "list "+query, r, 200, "")
	var ids []string
	for _, img := range r.json(t)["images"].([]any) {
		ids = append(ids, img.(map[string]any)["id"].(string))
	}
	return ids
}

func has(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func TestMembersLifecycleOverREST(t *testing.T) {
	e := sharingEnv(t)
	id := e.imageAs("owner", `{"name": "shared-disk", "disk_format": "raw", "container_format": "bare"}`)
	expect(t, "upload", e.do("PUT", "/v2/images/"+id+"/file", map[string]string{"X-Auth-Token": "owner", "Content-Type": "application/octet-stream"}, strings.NewReader("disk bytes")), 204, "")
	base := "/v2/images/" + id + "/members"

	expect(t, "p2 before sharing", e.as("consumer", "GET", "/v2/images/"+id, ""), 404, "")
	r := e.as("owner", "POST", base, `{"member": "p2"}`)
	expect(t, "owner adds p2", r, 200, "")
	m := r.json(t)
	if m["member_id"] != "p2" || m["image_id"] != id || m["status"] != "pending" || m["schema"] != "/v2/schemas/member" {
		t.Fatalf("member: %v", m)
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if s, _ := m[k].(string); len(s) != 20 || !strings.HasSuffix(s, "Z") {
			t.Fatalf("%s = %v, want Glance's YYYY-MM-DDTHH:MM:SSZ", k, m[k])
		}
	}
	expect(t, "owner adds p2 again", e.as("owner", "POST", base, `{"member": "p2"}`), 409, "Member p2 is duplicated for image "+id)
	expect(t, "owner adds p3", e.as("owner", "POST", base, `{"member": "p3"}`), 200, "")

	// Pending: p2 may show and download, but its list leaves it out.
	expect(t, "pending member shows", e.as("consumer", "GET", "/v2/images/"+id, ""), 200, "")
	if r := e.as("consumer", "GET", "/v2/images/"+id+"/file", ""); r.status != 200 || string(r.body) != "disk bytes" {
		t.Fatalf("pending member downloads: %d %q", r.status, r.body)
	}
	if has(listedIDs(t, e, "consumer", ""), id) {
		t.Fatal("pending image in p2's default list")
	}
	if !has(listedIDs(t, e, "consumer", "?member_status=pending"), id) || !has(listedIDs(t, e, "consumer", "?member_status=all&visibility=shared"), id) {
		t.Fatal("member_status=pending / all: image missing")
	}
	expect(t, "bad member_status", e.as("consumer", "GET", "/v2/images?member_status=maybe", ""), 400, "Invalid status: maybe")

	// Who changes the status.
	expect(t, "owner accepts for p2", e.as("owner", "PUT", base+"/p2", `{"status": "accepted"}`), 403, "Not allowed to update members for image "+id)
	expect(t, "p3 accepts for p2", e.as("other", "PUT", base+"/p2", `{"status": "accepted"}`), 404, "p2 not found in the member list of the image "+id)
	expect(t, "p2's reader accepts", e.as("consumer-reader", "PUT", base+"/p2", `{"status": "accepted"}`), 403, "")
	expect(t, "bad status", e.as("consumer", "PUT", base+"/p2", `{"status": "notavalidstatus"}`), 400, `Incorrect request: Status must be \"pending\", \"accepted\" or \"rejected\".`)
	expect(t, "no status", e.as("consumer", "PUT", base+"/p2", `{"state": "accepted"}`), 400, "Status not specified")
	r = e.as("consumer", "PUT", base+"/p2", `{"status": "accepted"}`)
	expect(t, "p2 accepts", r, 200, "")
	if r.json(t)["status"] != "accepted" {
		t.Fatalf("accepted: %s", r.body)
	}
	if !has(listedIDs(t, e, "consumer", ""), id) || !has(listedIDs(t, e, "consumer", "?visibility=shared"), id) {
		t.Fatal("accepted image not in p2's list")
	}
	if has(listedIDs(t, e, "consumer", "?member_status=rejected"), id) {
		t.Fatal("accepted image listed as rejected")
	}
	expect(t, "admin rejects for p3", e.as("admin", "PUT", base+"/p3", `{"status": "rejected"}`), 200, "")
	if has(listedIDs(t, e, "other", ""), id) || !has(listedIDs(t, e, "other", "?member_status=rejected"), id) {
		t.Fatal("p3's rejected image")
	}

	// Who sees which members.
	members := func(token string) []string {
		r := e.as(token, "GET", base, "")
		expect(t, "members as "+token, r, 200, "")
		var body struct {
			Members []struct {
				MemberID string `json:"member_id"`
			} `json:"members"`
			Schema string `json:"schema"`
		}
		json.Unmarshal(r.body, &body)
		if body.Schema != "/v2/schemas/members" {
			t.Fatalf("members schema link: %s", r.body)
		}
		var ids []string
		for _, m := range body.Members {
			ids = append(ids, m.MemberID)
		}
		return ids
	}
	if got := fmt.Sprint(members("owner")); got != "[p2 p3]" {
		t.Fatalf("owner sees %s", got)
	}
	if got := fmt.Sprint(members("consumer")); got != "[p2]" {
		t.Fatalf("p2 sees %s", got)
	}
	if got := fmt.Sprint(members("admin")); got != "[p2 p3]" {
		t.Fatalf("admin sees %s", got)
	}
	expect(t, "p2 shows p3", e.as("consumer", "GET", base+"/p3", ""), 404, "p3 not found in the member list")
	expect(t, "p2 shows itself", e.as("consumer", "GET", base+"/p2", ""), 200, `"accepted"`)
	expect(t, "owner shows p3", e.as("owner", "GET", base+"/p3", ""), 200, `"rejected"`)

	// A member may not add, remove, or change the image.
	expect(t, "p2 adds", e.as("consumer", "POST", base, `{"member": "p4"}`), 403, "Not allowed to create members for image "+id)
	expect(t, "p2 removes itself", e.as("consumer", "DELETE", base+"/p2", ""), 403, "Not allowed to delete members for image "+id)
	expect(t, "p2 renames", e.do("PATCH", "/v2/images/"+id, map[string]string{"X-Auth-Token": "consumer", "Content-Type": "application/openstack-images-v2.1-json-patch"}, strings.NewReader(`[{"op": "replace", "path": "/name", "value": "x"}]`)), 403, "")
	expect(t, "p2 deletes the image", e.as("consumer", "DELETE", "/v2/images/"+id, ""), 403, "")

	// Removal: the image leaves p2's list and p2 no longer sees it.
	expect(t, "owner removes a non-member", e.as("owner", "DELETE", base+"/p9", ""), 404, "p9 not found in the member list of the image "+id)
	expect(t, "owner removes p2", e.as("owner", "DELETE", base+"/p2", ""), 204, "")
	expect(t, "p2 after removal", e.as("consumer", "GET", "/v2/images/"+id, ""), 404, "")
	if has(listedIDs(t, e, "consumer", "?member_status=all"), id) {
		t.Fatal("removed member still lists the image")
	}

	// Deleting the image removes its members: a new image with the same
	// id (admins may choose it) starts without them.
	expect(t, "delete image", e.as("owner", "DELETE", "/v2/images/"+id, ""), 204, "")
	expect(t, "members of a deleted image", e.as("owner", "GET", base, ""), 404, "Image "+id+" not found.")
	e.imageAs("owner", `{"id": "`+id+`", "name": "again"}`)
	if got := members("owner"); len(got) != 0 {
		t.Fatalf("members survived their image: %v", got)
	}
	if has(listedIDs(t, e, "other", "?member_status=all"), id) {
		t.Fatal("p3's membership survived the image")
	}
}

func TestMembersBadInput(t *testing.T) {
	e := sharingEnv(t)
	id := e.imageAs("owner", `{"name": "x"}`)
	base := "/v2/images/" + id + "/members"
	for _, c := range []struct{ body, msg string }{
		{``, "Body expected in request."},
		{`{"member": `, "Malformed JSON in request body."},
		{`["p2"]`, `Expected a member in the form: {\"member\": \"image_id\"}`},
		{`{"project": "p2"}`, "Member to be added not specified"},
		{`{"member": ""}`, "Member can't be empty"},
		{`{"member": null}`, "Member can't be empty"},
		{`{"member": 42}`, `Expected a member in the form`},
		{`{"member": "p\u0000"}`, "NUL"},
		{`{"member": "` + strings.Repeat("p", 256) + `"}`, "longer than 255"},
		{`{"member": "p😀"}`, "Member can't contain 4 byte unicode characters."},
	} {
		expect(t, "add "+c.body, e.as("owner", "POST", base, c.body), 400, c.msg)
	}
	expect(t, "update with a list", e.as("consumer", "PUT", base+"/p2", `["accepted"]`), 400, `Expected a status in the form`)
	expect(t, "body on GET members", e.as("owner", "GET", base, `{"a": 1}`), 400, "A body is not expected with this request.")

	// A member id is not checked against projects (Glance does not ask
	// Keystone either): any text up to 255 characters is a member.
	expect(t, "non-project member", e.as("owner", "POST", base, `{"member": "no such project/ü"}`), 200, `"no such project/ü"`)
	expect(t, "show it, escaped", e.as("owner", "GET", base+"/no%20such%20project%2F%C3%BC", ""), 200, `"pending"`)
	// The owner may make its own project a member, but never accept.
	expect(t, "owner adds itself", e.as("owner", "POST", base, `{"member": "p1"}`), 200, "")
	expect(t, "owner accepts its own image", e.as("owner", "PUT", base+"/p1", `{"status": "accepted"}`), 403, "Not allowed to update members for image "+id)

	// Nothing changed by the refusals: two members, both pending.
	r := e.as("owner", "GET", base, "")
	if n := strings.Count(string(r.body), `"pending"`); r.status != 200 || n != 2 || strings.Contains(string(r.body), "accepted") {
		t.Fatalf("after the refusals: %s", r.body)
	}
}

func TestMembersOnlyForSharedImages(t *testing.T) {
	e := sharingEnv(t)
	for _, vis := range []string{"private", "community", "public"} {
		token := "owner"
		if vis == "public" {
			token = "admin" // only admins publicize
		}
		id := e.imageAs(token, `{"name": "x", "visibility": "`+vis+`"}`)
		base := "/v2/images/" + id + "/members"
		expect(t, vis+": add", e.as(token, "POST", base, `{"member": "p2"}`), 403, "Not allowed to create members for image "+id)
		expect(t, vis+": list", e.as(token, "GET", base, ""), 403, "Only shared images have members.")
		expect(t, vis+": show", e.as(token, "GET", base+"/p2", ""), 404, "Only shared images have members.")
		expect(t, vis+": update", e.as(token, "PUT", base+"/p2", `{"status": "accepted"}`), 403, "Not allowed to update members")
		expect(t, vis+": delete", e.as(token, "DELETE", base+"/p2", ""), 403, "Not allowed to delete members")
	}
	// A stranger's shared image is not found at all.
	id := e.imageAs("owner", `{"name": "x"}`)
	expect(t, "p3 adds to p1's image", e.as("other", "POST", "/v2/images/"+id+"/members", `{"member": "p3"}`), 404, "Image "+id+" not found.")
	expect(t, "p3 lists", e.as("other", "GET", "/v2/images/"+id+"/members", ""), 404, "")
	// Made private, the image keeps its members (inert); shared again,
	// they are back.
	expect(t, "add p2", e.as("owner", "POST", "/v2/images/"+id+"/members", `{"member": "p2"}`), 200, "")
	patch := func(vis string) {
		r := e.do("PATCH", "/v2/images/"+id, map[string]string{"X-Auth-Token": "owner", "Content-Type": "application/openstack-images-v2.1-json-patch"}, strings.NewReader(`[{"op": "replace", "path": "/visibility", "value": "`+vis+`"}]`))
		expect(t, "make "+vis, r, 200, "")
	}
	patch("private")
	expect(t, "p2 on private", e.as("consumer", "GET", "/v2/images/"+id, ""), 404, "")
	patch("shared")
	expect(t, "p2 on shared again", e.as("consumer", "GET", "/v2/images/"+id+"/members/p2", ""), 200, `"pending"`)
}

func TestMemberLimitAt1000(t *testing.T) {
	e := sharingEnv(t)
	id := e.imageAs("owner", `{"name": "popular"}`)
	base := "/v2/images/" + id + "/members"
	for i := 1; i <= 1000; i++ {
		r := e.as("owner", "POST", base, fmt.Sprintf(`{"member": "project-%04d"}`, i))
		if i <= 128 {
			expect(t, fmt.Sprint("member ", i), r, 200, "")
			continue
		}
		// Every refusal: the count stays at 128.
		expect(t, fmt.Sprint("member ", i), r, 413, "Image member limit exceeded for image "+id+": The limit has been exceeded on the number of allowed image members for this image. Attempted: 129, Maximum: 128:")
	}
	r := e.as("owner", "GET", base, "")
	if n := strings.Count(string(r.body), `"member_id"`); n != 128 {
		t.Fatalf("%d members after the refusals", n)
	}
}

// FuzzMemberBodies: POST .../members and PUT .../members/p2 with any body,
// on one shared image: no 5xx, every refusal has Glance's body and changes
// nothing (fuzzServer checks both), and whatever gets in is a well-formed
// member.
func FuzzMemberBodies(f *testing.F) {
	for _, seed := range []string{
		`{"member": "p3"}`, `{"member": ""}`, `{"member": null}`, `{"member": 7}`, `{"member": ["p"]}`,
		`{"member": "p\u0000"}`, `{"member": "\ud83d\ude00"}`, `{"status": "accepted"}`, `{"status": "maybe"}`,
		`{"status": 1}`, `[]`, `null`, `{} {}`, "{\"member\": \"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	s := newFuzzServer(f)
	img, err := s.svc.Create(f.Context(), lifecycletest.Admin, lifecycle.CreateSpec{Name: "shared"})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := s.svc.Members().Add(f.Context(), lifecycletest.Admin, img.ID, "p2"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, req := range []struct{ method, path string }{
			{"POST", "/v2/images/" + img.ID + "/members"},
			{"PUT", "/v2/images/" + img.ID + "/members/p2"},
		} {
			rec := s.serve(t, req.method, req.path, "application/json", body)
			if rec.Code != http.StatusOK {
				continue
			}
			var m struct{ MemberID, ImageID, Status string }
			json.Unmarshal(rec.Body.Bytes(), &struct {
				MemberID *string `json:"member_id"`
				ImageID  *string `json:"image_id"`
				Status   *string `json:"status"`
			}{&m.MemberID, &m.ImageID, &m.Status})
			if m.ImageID != img.ID || !slices.Contains(meta.MemberStatuses, m.Status) || !meta.ValidMemberID(m.MemberID) || !utf8.ValidString(m.MemberID) || len([]rune(m.MemberID)) > 255 {
				t.Fatalf("%s %s: 200 with %s", req.method, req.path, rec.Body)
			}
		}
	})
}
