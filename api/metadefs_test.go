package api_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/lifecycletest"
	"github.com/glimpse-project/glimpse/lifecycle/metadefs"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
)

// mdEnv is a REST listener with the metadefs API and three callers: an
// admin, a member of project p1 and a member of project p2.
type mdEnv struct{ *env }

func newMetadefsEnv(t *testing.T) mdEnv {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {
		"admin": {"project": "admin", "roles": ["admin", "member", "reader"]},
		"p1": {"project": "p1", "roles": ["member", "reader"]},
		"p2": {"project": "p2", "roles": ["member", "reader"]}}}`), 0o600)
	db, err := badgerkv.Open("", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lt := lifecycletest.New(t, lifecycle.Config{})
	s, err := api.New(lt.Service, api.Options{AuthTokens: tokens, Metadefs: metadefs.New(db, lt.Service.Authorizer())})
	if err != nil {
		t.Fatal(err)
	}
	s.SetReady(true)
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close(); db.Close() })
	return mdEnv{&env{t: t, url: srv.URL, svc: lt.Service}}
}

// as sends a request with the token and a JSON body (none if "").
func (e mdEnv) as(token, method, path, body string, hdr ...string) reply {
	e.t.Helper()
	h := map[string]string{"X-Auth-Token": token, "Accept": "application/json"}
	for i := 0; i+1 < len(hdr); i += 2 {
		h[hdr[i]] = hdr[i+1]
	}
	if body == "" {
		return e.do(method, path, h, nil)
	}
	h["Content-Type"] = "application/json"
	return e.do(method, path, h, strings.NewReader(body))
}

func (e mdEnv) want(r reply, status int, what string) reply {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("%s: %d %s, want %d", what, r.status, r.body, status)
	}
	return r
}

const ns = "/v2/metadefs/namespaces"

func TestMetadefsSchemas(t *testing.T) {
	e := newMetadefsEnv(t)
	for path, name := range map[string]string{
		"namespace": "namespace", "namespaces": "namespaces", "object": "object", "objects": "objects",
		"property": "property", "properties": "properties", "tag": "tag", "tags": "tags",
		"resource_type": "resource_type_association", "resource_types": "resource_type_associations",
	} {
		r := e.want(e.as("p2", "GET", "/v2/schemas/metadefs/"+path, ""), 200, path)
		if got := r.json(t)["name"]; got != name {
			t.Errorf("schema %s is named %v, want %s (tempest checks it)", path, got, name)
		}
	}
	e.want(e.as("p2", "GET", "/v2/schemas/metadefs/nothing", ""), 404, "unknown schema")
}

func TestMetadefsNamespaces(t *testing.T) {
	e := newMetadefsEnv(t)
	// Writes are admin-only, as Glance 25's defaults.
	e.want(e.as("p1", "POST", ns, `{"namespace": "mine"}`), 403, "member creates")
	r := e.want(e.as("admin", "POST", ns, `{"namespace": "priv", "owner": "p1", "display_name": "Private",
		"resource_type_associations": [{"name": "OS::Glance::Image", "prefix": "hw_"}],
		"properties": {"cpu": {"title": "CPU", "type": "string", "enum": ["a", "b"]}},
		"objects": [{"name": "obj", "properties": {"x": {"title": "X", "type": "integer", "minimum": 1}}, "required": ["x"]}],
		"tags": [{"name": "t1"}]}`), 201, "admin creates")
	if r.header.Get("Location") != ns+"/priv" {
		t.Errorf("Location %q", r.header.Get("Location"))
	}
	body := r.json(t)
	if body["visibility"] != "private" || body["protected"] != false || body["owner"] != "p1" || body["self"] != ns+"/priv" || body["schema"] != "/v2/schemas/metadefs/namespace" {
		t.Errorf("created namespace %s", r.body)
	}
	e.want(e.as("admin", "POST", ns, `{"namespace": "pub", "visibility": "public", "protected": true}`), 201, "public")
	e.want(e.as("admin", "POST", ns, `{"namespace": "pub"}`), 409, "duplicate")

	// Who sees what: the owner project and admins see a private one;
	// another project gets 404, never 403.
	r = e.want(e.as("p1", "GET", ns+"/priv", ""), 200, "owner shows")
	var shown struct {
		Properties map[string]map[string]any `json:"properties"`
		Objects    []map[string]any          `json:"objects"`
		Tags       []map[string]any          `json:"tags"`
		RTA        []map[string]any          `json:"resource_type_associations"`
	}
	json.Unmarshal(r.body, &shown)
	if shown.Properties["cpu"]["title"] != "CPU" || len(shown.Objects) != 1 || shown.Objects[0]["self"] != ns+"/priv/objects/obj" || len(shown.Tags) != 1 || len(shown.RTA) != 1 {
		t.Errorf("show with contents: %s", r.body)
	}
	r = e.want(e.as("p1", "GET", ns+"/priv?resource_type=OS::Glance::Image", ""), 200, "show with prefix")
	json.Unmarshal(r.body, &shown)
	if _, ok := shown.Properties["hw_cpu"]; !ok {
		t.Errorf("?resource_type= did not prefix the properties: %s", r.body)
	}
	e.want(e.as("p2", "GET", ns+"/priv", ""), 404, "other project shows private")
	e.want(e.as("p2", "GET", ns+"/priv/objects", ""), 404, "other project lists objects")
	e.want(e.as("p2", "PUT", ns+"/priv", `{"namespace": "priv"}`), 404, "other project updates")
	e.want(e.as("p1", "DELETE", ns+"/priv", ""), 403, "owner member deletes")
	e.want(e.as("p2", "DELETE", ns+"/pub", ""), 403, "member deletes public")
	list := func(tok, query string) []string {
		r := e.want(e.as(tok, "GET", ns+query, ""), 200, "list "+query)
		var l struct {
			Namespaces []struct{ Namespace string } `json:"namespaces"`
			Next       string                       `json:"next"`
		}
		json.Unmarshal(r.body, &l)
		var names []string
		for _, n := range l.Namespaces {
			names = append(names, n.Namespace)
		}
		if l.Next != "" {
			names = append(names, "next="+l.Next)
		}
		return names
	}
	if got := strings.Join(list("p2", ""), ","); got != "pub" {
		t.Errorf("other project lists %s, want pub", got)
	}
	if got := strings.Join(list("p1", "?sort_key=namespace&sort_dir=asc"), ","); got != "priv,pub" {
		t.Errorf("owner lists %s", got)
	}
	if got := strings.Join(list("admin", "?sort_key=namespace&sort_dir=asc&limit=1"), ","); got != "priv,next=/v2/metadefs/namespaces?limit=1&marker=priv&sort_dir=asc&sort_key=namespace" {
		t.Errorf("first page %s", got)
	}
	if got := strings.Join(list("admin", "?sort_key=namespace&sort_dir=asc&limit=1&marker=priv"), ","); !strings.HasPrefix(got, "pub") {
		t.Errorf("second page %s", got)
	}
	if got := strings.Join(list("admin", "?resource_types=OS::Glance::Image"), ","); got != "priv" {
		t.Errorf("resource_types filter %s", got)
	}
	if got := strings.Join(list("admin", "?visibility=public"), ","); got != "pub" {
		t.Errorf("visibility filter %s", got)
	}
	e.want(e.as("admin", "GET", ns+"?visibility=shared", ""), 400, "bad visibility")
	e.want(e.as("admin", "GET", ns+"?sort_dir=up", ""), 400, "bad sort dir")
	e.want(e.as("admin", "GET", ns+"?limit=-1", ""), 400, "negative limit")
	e.want(e.as("admin", "GET", ns+"?limit=x", ""), 400, "limit not a number")
	if got := list("admin", "?limit=0"); len(got) != 0 {
		t.Errorf("limit=0 lists %v", got)
	}
	e.want(e.as("admin", "GET", ns+"?marker=nope", ""), 404, "unknown marker")

	// Protected: 403 until updated; PUT replaces (protected and
	// visibility fall back to false and private).
	e.want(e.as("admin", "DELETE", ns+"/pub", ""), 403, "protected delete")
	r = e.want(e.as("admin", "PUT", ns+"/pub", `{"namespace": "pub", "description": "d"}`), 200, "update")
	if b := r.json(t); b["protected"] != false || b["visibility"] != "private" || b["description"] != "d" {
		t.Errorf("update: %s", r.body)
	}
	e.want(e.as("admin", "PUT", ns+"/pub", `{"namespace": "priv"}`), 409, "rename onto another")
	e.want(e.as("admin", "PUT", ns+"/pub", `{"namespace": "pub", "created_at": "x"}`), 403, "read-only attribute")
	e.want(e.as("admin", "DELETE", ns+"/pub", ""), 204, "delete")
	e.want(e.as("admin", "GET", ns+"/pub", ""), 404, "deleted")

	// Bad input loses nothing.
	for _, bad := range []string{`{`, `[1]`, `{"namespace": ""}`, `{"namespace": "` + strings.Repeat("n", 81) + `"}`,
		`{"namespace": "x", "visibility": "shared"}`, `{"namespace": "x", "bogus": 1}`, `{"namespace": 7}`} {
		e.want(e.as("admin", "POST", ns, bad), 400, "bad body "+bad[:min(len(bad), 30)])
	}
	e.want(e.as("admin", "POST", ns, ""), 400, "no body")
	var many strings.Builder
	many.WriteString(`{"namespace": "huge", "tags": [{"name": "t0"}`)
	for i := 1; i < 3000; i++ {
		fmt.Fprintf(&many, `, {"name": "t%d"}`, i)
	}
	e.want(e.as("admin", "POST", ns, many.String()+`]}`), 413, "3000 tags")
	e.want(e.as("admin", "GET", ns+"/huge", ""), 404, "refused namespace")
	if got := list("admin", ""); len(got) != 1 {
		t.Errorf("after bad input: %v", got)
	}
	// Delete contents.
	for _, kind := range []string{"objects", "properties", "tags"} {
		e.want(e.as("p1", "DELETE", ns+"/priv/"+kind, ""), 403, "member deletes "+kind)
		e.want(e.as("admin", "DELETE", ns+"/priv/"+kind, ""), 204, "delete "+kind)
	}
	r = e.want(e.as("admin", "GET", ns+"/priv", ""), 200, "emptied")
	if b := r.json(t); b["objects"] != nil || b["properties"] != nil || b["tags"] != nil || b["resource_type_associations"] == nil {
		t.Errorf("after deleting contents: %s", r.body)
	}
}

func TestMetadefsObjectsPropertiesTags(t *testing.T) {
	e := newMetadefsEnv(t)
	e.want(e.as("admin", "POST", ns, `{"namespace": "n", "visibility": "public"}`), 201, "namespace")
	o := ns + "/n/objects"
	e.want(e.as("p1", "POST", o, `{"name": "o1"}`), 403, "member creates object")
	r := e.want(e.as("admin", "POST", o, `{"name": "o1", "description": "d", "properties": {"a": {"title": "A", "type": "string"}}}`), 201, "object")
	if b := r.json(t); b["self"] != o+"/o1" || b["schema"] != "/v2/schemas/metadefs/object" || b["created_at"] == nil {
		t.Errorf("object: %s", r.body)
	}
	e.want(e.as("admin", "POST", o, `{"name": "o1"}`), 409, "duplicate object")
	e.want(e.as("admin", "POST", o, `{"name": "o2", "properties": {"a": {"title": "A"}}}`), 400, "object property without type")
	e.want(e.as("admin", "POST", ns+"/none/objects", `{"name": "o1"}`), 404, "unknown namespace")
	r = e.want(e.as("p2", "GET", o, ""), 200, "list objects")
	if b := r.json(t); len(b["objects"].([]any)) != 1 || b["schema"] != "v2/schemas/metadefs/objects" {
		t.Errorf("objects: %s", r.body)
	}
	e.want(e.as("p2", "GET", o+"/o1", ""), 200, "show object")
	e.want(e.as("admin", "GET", o+"/nope", ""), 404, "unknown object")
	r = e.want(e.as("admin", "PUT", o+"/o1", `{"name": "o3"}`), 200, "rename object")
	if r.json(t)["name"] != "o3" {
		t.Errorf("renamed: %s", r.body)
	}
	e.want(e.as("admin", "GET", o+"/o1", ""), 404, "old object name")
	e.want(e.as("admin", "DELETE", o+"/o3", ""), 204, "delete object")

	p := ns + "/n/properties"
	r = e.want(e.as("admin", "POST", p, `{"name": "hypervisor", "title": "H", "type": "string", "enum": ["kvm", "qemu"]}`), 201, "property")
	if b := r.json(t); b["name"] != "hypervisor" || b["title"] != "H" || b["created_at"] != nil {
		t.Errorf("property: %s", r.body)
	}
	e.want(e.as("admin", "POST", p, `{"name": "hypervisor", "title": "H", "type": "string"}`), 409, "duplicate property")
	e.want(e.as("admin", "POST", p, `{"name": "x", "title": "X", "type": "float"}`), 400, "bad type")
	e.want(e.as("admin", "POST", p, `{"name": "x", "type": "string"}`), 400, "no title")
	r = e.want(e.as("p2", "GET", p, ""), 200, "list properties")
	if props := r.json(t)["properties"].(map[string]any); props["hypervisor"] == nil {
		t.Errorf("properties: %s", r.body)
	}
	r = e.want(e.as("admin", "PUT", p+"/hypervisor", `{"name": "hypervisor", "title": "H2", "type": "string"}`), 200, "update property")
	if r.json(t)["title"] != "H2" {
		t.Errorf("updated property: %s", r.body)
	}
	e.want(e.as("p1", "DELETE", p+"/hypervisor", ""), 403, "member deletes property")
	e.want(e.as("admin", "DELETE", p+"/hypervisor", ""), 204, "delete property")
	e.want(e.as("admin", "GET", p+"/hypervisor", ""), 404, "deleted property")

	tg := ns + "/n/tags"
	e.want(e.as("admin", "POST", tg, `{"tags": [{"name": "a"}, {"name": "b"}]}`), 201, "bulk tags")
	e.want(e.as("admin", "POST", tg, `{"tags": [{"name": "c"}]}`, "X-Openstack-Append", "True"), 201, "append")
	r = e.want(e.as("p2", "GET", tg, ""), 200, "list tags")
	if n := len(r.json(t)["tags"].([]any)); n != 3 {
		t.Errorf("after append: %s", r.body)
	}
	e.want(e.as("admin", "POST", tg, `{"tags": [{"name": "d"}, {"name": "d"}]}`), 409, "duplicate in bulk")
	e.want(e.as("admin", "POST", tg, `{"tags": [{"name": "d"}]}`), 201, "replace")
	r = e.want(e.as("admin", "GET", tg, ""), 200, "list tags")
	if got := string(r.body); !strings.Contains(got, `"d"`) || strings.Contains(got, `"a"`) {
		t.Errorf("after replace: %s", got)
	}
	e.want(e.as("admin", "POST", tg+"/single", ""), 201, "single tag")
	e.want(e.as("admin", "POST", tg+"/single", ""), 409, "duplicate tag")
	e.want(e.as("admin", "POST", tg+"/"+strings.Repeat("t", 81), ""), 400, "long tag")
	r = e.want(e.as("admin", "PUT", tg+"/single", `{"name": "renamed"}`), 200, "rename tag")
	if r.json(t)["name"] != "renamed" {
		t.Errorf("renamed tag: %s", r.body)
	}
	e.want(e.as("p2", "GET", tg+"/renamed", ""), 200, "show tag")
	e.want(e.as("p2", "DELETE", tg+"/renamed", ""), 403, "member deletes tag")
	e.want(e.as("admin", "DELETE", tg+"/renamed", ""), 204, "delete tag")
	e.want(e.as("admin", "POST", tg, `{"tags": [{"name": "x", "bogus": 1}]}`), 400, "bad bulk body")

	// Paging, as Glance's tag and object lists take it.
	e.want(e.as("admin", "POST", tg, `{"tags": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}`), 201, "tags to page")
	names := func(query string) string {
		r := e.want(e.as("p2", "GET", tg+query, ""), 200, "tags "+query)
		var l struct{ Tags []struct{ Name string } }
		json.Unmarshal(r.body, &l)
		var out []string
		for _, t := range l.Tags {
			out = append(out, t.Name)
		}
		return strings.Join(out, ",")
	}
	if got := names("?sort_key=name&sort_dir=asc&limit=2"); got != "a,b" {
		t.Errorf("first page %s", got)
	}
	if got := names("?sort_key=name&sort_dir=asc&marker=b"); got != "c" {
		t.Errorf("after marker %s", got)
	}
	if got := names("?sort_key=name"); got != "c,b,a" {
		t.Errorf("default direction %s, want newest/last first", got)
	}
	e.want(e.as("p2", "GET", tg+"?marker=zzz", ""), 404, "unknown marker")
	e.want(e.as("p2", "GET", tg+"?sort_dir=sideways", ""), 400, "bad sort dir")
	e.want(e.as("p2", "GET", tg+"?sort_key=color", ""), 400, "bad sort key")
	e.want(e.as("p2", "GET", o+"?limit=0", ""), 400, "objects limit 0")
}

func TestMetadefsResourceTypes(t *testing.T) {
	e := newMetadefsEnv(t)
	r := e.want(e.as("p2", "GET", "/v2/metadefs/resource_types", ""), 200, "empty list")
	if string(r.body) != "{\"resource_types\":[]}\n" {
		t.Errorf("no resource types: %s", r.body)
	}
	e.want(e.as("admin", "POST", ns, `{"namespace": "n", "owner": "p1"}`), 201, "namespace")
	a := ns + "/n/resource_types"
	e.want(e.as("p1", "POST", a, `{"name": "OS::Nova::Flavor"}`), 403, "member associates")
	r = e.want(e.as("admin", "POST", a, `{"name": "OS::Nova::Flavor", "prefix": "hw:"}`), 201, "associate")
	if b := r.json(t); b["name"] != "OS::Nova::Flavor" || b["prefix"] != "hw:" {
		t.Errorf("association: %s", r.body)
	}
	e.want(e.as("admin", "POST", a, `{"name": "OS::Nova::Flavor"}`), 409, "duplicate association")
	e.want(e.as("admin", "POST", a, `{"prefix": "x"}`), 400, "association without a name")
	r = e.want(e.as("p2", "GET", "/v2/metadefs/resource_types", ""), 200, "list")
	if !strings.Contains(string(r.body), "OS::Nova::Flavor") {
		t.Errorf("resource types: %s", r.body)
	}
	r = e.want(e.as("p1", "GET", a, ""), 200, "owner lists associations")
	if len(r.json(t)["resource_type_associations"].([]any)) != 1 {
		t.Errorf("associations: %s", r.body)
	}
	e.want(e.as("p2", "GET", a, ""), 404, "other project lists associations")
	e.want(e.as("admin", "DELETE", a+"/OS::Nope", ""), 404, "unknown association")
	e.want(e.as("admin", "DELETE", a+"/OS::Nova::Flavor", ""), 204, "dissociate")
	r = e.want(e.as("admin", "GET", a, ""), 200, "after dissociate")
	if len(r.json(t)["resource_type_associations"].([]any)) != 0 {
		t.Errorf("associations after delete: %s", r.body)
	}
}

func TestMetadefsErrorBodies(t *testing.T) {
	e := newMetadefsEnv(t)
	r := e.do("GET", ns+"/nope", map[string]string{"X-Auth-Token": "p1"}, nil)
	if r.status != http.StatusNotFound || !strings.Contains(string(r.body), "Metadata definition namespace=nope was not found.") || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Errorf("404 body: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	e.want(e.as("nobody", "GET", ns, ""), 401, "unknown token")
}

// TestMetadefsTempestSequences replays what Tempest's metadefs tests
// (tempest.api.image.v2.admin.test_images_metadefs_*) send and check, on
// Glance's own definitions.
func TestMetadefsTempestSequences(t *testing.T) {
	e := newMetadefsEnv(t)
	files, err := metadefs.DefinitionFiles("/etc/glance/metadefs")
	if err != nil {
		t.Fatalf("%v (scripts/install-deps installs glance-common)", err)
	}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		e.want(e.as("admin", "POST", ns, string(raw)), 201, f)
	}
	r := e.want(e.as("admin", "GET", "/v2/metadefs/resource_types", ""), 200, "list_resource_types")
	var rts struct {
		ResourceTypes []struct{ Name string } `json:"resource_types"`
	}
	json.Unmarshal(r.body, &rts)
	if len(rts.ResourceTypes) == 0 {
		t.Fatalf("no resource types after loading: %s", r.body)
	}
	rt := rts.ResourceTypes[0].Name

	// test_basic_metadata_definition_namespaces
	e.want(e.as("admin", "POST", ns, `{"namespace": "tempest-ns", "visibility": "public", "description": "Tempest", "display_name": "tempest-ns", "resource_type_associations": [{"name": "`+rt+`"}], "protected": true}`), 201, "create_namespace")
	if r := e.want(e.as("admin", "GET", ns, ""), 200, "list_namespaces"); !strings.Contains(string(r.body), `"namespace":"tempest-ns"`) {
		t.Errorf("tempest-ns not in the first page: %s", r.body)
	}
	if b := e.want(e.as("admin", "GET", ns+"/tempest-ns", ""), 200, "show").json(t); b["visibility"] != "public" {
		t.Errorf("show: %v", b)
	}
	e.want(e.as("admin", "DELETE", ns+"/tempest-ns", ""), 403, "delete protected")
	b := e.want(e.as("admin", "PUT", ns+"/tempest-ns", `{"namespace": "tempest-ns", "description": "Tempest", "visibility": "private", "display_name": "tempest-ns", "protected": false}`), 200, "update").json(t)
	if b["visibility"] != "private" || b["protected"] != false {
		t.Errorf("update: %v", b)
	}
	e.want(e.as("admin", "DELETE", ns+"/tempest-ns", ""), 204, "delete")
	e.want(e.as("admin", "GET", ns+"/tempest-ns", ""), 404, "wait_for_resource_deletion")

	// test_basic_meta_def_namespace_property: the resource type's name as
	// a property name, colons and all.
	e.want(e.as("admin", "POST", ns, `{"namespace": "tempest-p", "visibility": "public", "description": "Tempest", "protected": false, "display_name": "tempest-p"}`), 201, "create_namespace")
	e.want(e.as("admin", "POST", ns+"/tempest-p/resource_types", `{"name": "`+rt+`"}`), 201, "create_resource_type_association")
	enum := `["xen", "qemu", "kvm", "lxc", "uml", "vmware", "hyperv"]`
	if b := e.want(e.as("admin", "POST", ns+"/tempest-p/properties", `{"title": "prop", "name": "`+rt+`", "type": "string", "enum": `+enum+`}`), 201, "create_namespace_property").json(t); b["title"] != "prop" {
		t.Errorf("property: %v", b)
	}
	if b := e.want(e.as("admin", "GET", ns+"/tempest-p/properties/"+rt, ""), 200, "show_namespace_properties").json(t); b["name"] != rt {
		t.Errorf("show property: %v", b)
	}
	if b := e.want(e.as("admin", "PUT", ns+"/tempest-p/properties/"+rt, `{"title": "prop2", "type": "string", "enum": `+enum+`, "name": "`+rt+`"}`), 200, "update_namespace_properties").json(t); b["title"] != "prop2" {
		t.Errorf("update property: %v", b)
	}
	e.want(e.as("admin", "DELETE", ns+"/tempest-p/properties/"+rt, ""), 204, "delete_namespace_property")
	if r := e.want(e.as("admin", "GET", ns+"/tempest-p/properties", ""), 200, "list"); string(r.body) != "{\"properties\":{}}\n" {
		t.Errorf("properties after delete: %s", r.body)
	}
	// test_basic_meta_def_resource_type_association (on its own namespace)
	e.want(e.as("admin", "POST", ns, `{"namespace": "tempest-r", "visibility": "public"}`), 201, "create_namespace")
	if b := e.want(e.as("admin", "POST", ns+"/tempest-r/resource_types", `{"name": "`+rt+`"}`), 201, "associate").json(t); b["name"] != rt {
		t.Errorf("association: %v", b)
	}
	e.want(e.as("admin", "DELETE", ns+"/tempest-r/resource_types/"+rt, ""), 204, "delete_resource_type_association")
	// test_create_list_delete_namespace_tags
	e.want(e.as("admin", "POST", ns+"/tempest-r/tags", `{"tags": [{"name": "sample-tag1"}, {"name": "sample-tag2"}, {"name": "sample-tag3"}]}`), 201, "create_namespace_tags")
	if b := e.want(e.as("admin", "GET", ns+"/tempest-r/tags", ""), 200, "list").json(t); len(b["tags"].([]any)) != 3 {
		t.Errorf("tags: %v", b)
	}
	e.want(e.as("admin", "DELETE", ns+"/tempest-r/tags", ""), 204, "delete_namespace_tags")
	if r := e.want(e.as("admin", "GET", ns+"/tempest-r/tags", ""), 200, "list"); string(r.body) != "{\"tags\":[]}\n" {
		t.Errorf("tags after delete: %s", r.body)
	}
	// test_create_update_delete_meta_namespace_objects
	e.want(e.as("admin", "POST", ns+"/tempest-r/objects", `{"name": "obj"}`), 201, "create_namespace_object")
	if b := e.want(e.as("admin", "PUT", ns+"/tempest-r/objects/obj", `{"name": "obj2"}`), 200, "update_namespace_object").json(t); b["name"] != "obj2" {
		t.Errorf("object: %v", b)
	}
	e.want(e.as("admin", "DELETE", ns+"/tempest-r/objects/obj2", ""), 204, "delete_namespace_object")
}
