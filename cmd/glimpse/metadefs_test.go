package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/lifecycle/metadefs"
	"github.com/glimpse-project/glimpse/meta"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
)

// glanceMetadefs is where Debian's glance-common puts Glance's definition
// files (scripts/install-deps installs it).
const glanceMetadefs = "/etc/glance/metadefs"

func definitionFiles(t *testing.T) []string {
	t.Helper()
	files, err := metadefs.DefinitionFiles(glanceMetadefs)
	if err != nil {
		t.Fatalf("%v (scripts/install-deps installs glance-common)", err)
	}
	return files
}

func metadefsTokens(t *testing.T) string {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {"ADMIN": {"project": "admin", "roles": ["admin"]}, "P1": {"project": "p1", "roles": ["member"]}}}`), 0o600)
	return tokens
}

// namespaceCount counts the namespaces the token sees, following next.
func namespaceCount(t *testing.T, url, token string) int {
	t.Helper()
	n, next := 0, "/v2/metadefs/namespaces?limit=7"
	for next != "" {
		req, _ := http.NewRequest("GET", url+next, nil)
		req.Header.Set("X-Auth-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var page struct {
			Namespaces []any  `json:"namespaces"`
			Next       string `json:"next"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("list namespaces: %d %s", resp.StatusCode, body)
		}
		n += len(page.Namespaces)
		next = page.Next
	}
	return n
}

func TestMetadefsLoadOverREST(t *testing.T) {
	t.Parallel()
	files := definitionFiles(t)
	url := serveInProcess(t, serveOptions{authTokens: metadefsTokens(t)})

	// Loading is an admin's job: a member's load fails and loads nothing.
	if out, err := glimpseCLI(t, "metadefs", "load", "--os-image-url", url, "--os-auth-token", "P1", glanceMetadefs); err == nil || !strings.Contains(out, "403") {
		t.Fatalf("member's load: %v\n%s", err, out)
	}
	if n := namespaceCount(t, url, "ADMIN"); n != 0 {
		t.Fatalf("a refused load left %d namespaces", n)
	}
	out := mustGlimpse(t, "metadefs", "load", "--os-image-url", url, "--os-auth-token", "ADMIN", glanceMetadefs)
	if want := "33 loaded, 0 skipped, 0 failed"; len(files) == 33 && !strings.Contains(out, want) {
		t.Fatalf("load: %s, want %s", out, want)
	}
	if n := namespaceCount(t, url, "ADMIN"); n != len(files) {
		t.Fatalf("%d namespaces after loading %d files", n, len(files))
	}
	// The glance CLI sees the same (it follows next itself).
	g := newGlanceCLI(t, url, "ADMIN")
	list := g.must("md-namespace-list")
	if rows := strings.Count(list, "\n| ") - 1; rows != len(files) {
		t.Fatalf("glance md-namespace-list shows %d namespaces, want %d:\n%s", rows, len(files), list)
	}
	// Loading again skips every namespace, as glance-manage does.
	out = mustGlimpse(t, "metadefs", "load", "--os-image-url", url, "--os-auth-token", "ADMIN", glanceMetadefs)
	if !strings.Contains(out, "0 loaded, ") || !strings.Contains(out, " skipped, 0 failed") {
		t.Fatalf("second load: %s", out)
	}
	if n := namespaceCount(t, url, "ADMIN"); n != len(files) {
		t.Fatalf("%d namespaces after a second load", n)
	}
	// A member sees only the public ones.
	if n := namespaceCount(t, url, "P1"); n == 0 || n >= len(files) {
		t.Fatalf("member sees %d of %d namespaces, want the public ones", n, len(files))
	}
	// Bad input: not a definition file.
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"namespace": "`+strings.Repeat("x", 81)+`"}`), 0o644)
	if out, err := glimpseCLI(t, "metadefs", "load", "--os-image-url", url, "--os-auth-token", "ADMIN", bad); err == nil || !strings.Contains(out, "400") {
		t.Fatalf("a namespace name over 80 characters loaded: %v\n%s", err, out)
	}
}

func TestMetadefsLoadData(t *testing.T) {
	t.Parallel()
	files := definitionFiles(t)
	data := t.TempDir()
	db, err := badgerkv.Open(filepath.Join(data, "registry"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := meta.Open(db); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := glimpseCLI(t, "metadefs", "load", "--data", t.TempDir(), glanceMetadefs); err == nil {
		t.Fatal("--data without a registry accepted")
	}
	mustGlimpse(t, "metadefs", "load", "--data", data, glanceMetadefs)
	url := serveInProcess(t, serveOptions{data: data, authTokens: metadefsTokens(t)})
	if n := namespaceCount(t, url, "ADMIN"); n != len(files) {
		t.Fatalf("daemon on the loaded registry lists %d namespaces, want %d", n, len(files))
	}
	// The registry is the daemon's now: --data refuses it.
	if out, err := glimpseCLI(t, "metadefs", "load", "--data", data, glanceMetadefs); err == nil || !strings.Contains(out+err.Error(), "glimpse serve running") {
		t.Fatalf("--data beside a running daemon: %v\n%s", err, out)
	}
}

func TestGlanceMetadefsCLI(t *testing.T) {
	t.Parallel()
	url := serveInProcess(t, serveOptions{authTokens: metadefsTokens(t)})
	g := newGlanceCLI(t, url, "ADMIN")
	member := newGlanceCLI(t, url, "P1")

	out := g.must("md-namespace-create", "ns1", "--visibility", "public", "--description", "tempest-like", "--protected", "true")
	if field(t, out, "visibility") != "public" || field(t, out, "protected") != "True" {
		t.Fatalf("md-namespace-create:\n%s", out)
	}
	if _, errs, ok := g.run("md-namespace-create", "ns1"); ok || !strings.Contains(errs, "409") {
		t.Fatalf("duplicate namespace: %v %s", ok, errs)
	}
	if _, errs, ok := member.run("md-namespace-create", "ns2"); ok || !strings.Contains(errs, "403") {
		t.Fatalf("member creates a namespace: %v %s", ok, errs)
	}
	g.must("md-object-create", "ns1", "--name", "obj1", "--schema", `{"description": "d", "properties": {"a": {"title": "A", "type": "string"}}}`)
	g.must("md-property-create", "ns1", "--name", "prop1", "--title", "P", "--schema", `{"type": "string", "title": "P"}`)
	g.must("md-tag-create", "ns1", "--name", "tag1")
	g.must("md-tag-create-multiple", "ns1", "--names", "a,b")
	g.must("md-resource-type-associate", "ns1", "--name", "OS::Glance::Image", "--prefix", "img_")
	if out := g.must("md-resource-type-list"); !strings.Contains(out, "OS::Glance::Image") {
		t.Fatalf("md-resource-type-list:\n%s", out)
	}
	if out := g.must("md-namespace-resource-type-list", "ns1"); !strings.Contains(out, "img_") {
		t.Fatalf("md-namespace-resource-type-list:\n%s", out)
	}
	out = member.must("md-namespace-show", "ns1", "--resource-type", "OS::Glance::Image")
	if !strings.Contains(field(t, out, "properties"), "img_prop1") || !strings.Contains(field(t, out, "objects"), "obj1") || !strings.Contains(field(t, out, "tags"), `"a"`) {
		t.Fatalf("md-namespace-show by a member:\n%s", out)
	}
	if out := member.must("md-namespace-list"); !strings.Contains(out, "ns1") {
		t.Fatalf("member's md-namespace-list:\n%s", out)
	}
	if out := g.must("md-object-show", "ns1", "obj1"); field(t, out, "description") != "d" {
		t.Fatalf("md-object-show:\n%s", out)
	}
	if out := g.must("md-property-show", "ns1", "prop1"); field(t, out, "title") != "P" {
		t.Fatalf("md-property-show:\n%s", out)
	}
	if out := g.must("md-tag-list", "ns1"); strings.Contains(out, "tag1") || !strings.Contains(out, "| a ") {
		t.Fatalf("md-tag-create-multiple replaces the tags:\n%s", out)
	}
	// Protected: delete refused, nothing lost; unprotect, then delete.
	if _, errs, ok := g.run("md-namespace-delete", "ns1"); ok || !strings.Contains(errs, "protected") {
		t.Fatalf("protected namespace deleted: %v %s", ok, errs)
	}
	if _, errs, ok := member.run("md-namespace-update", "ns1", "--protected", "false"); ok || !strings.Contains(errs, "403") {
		t.Fatalf("member updates: %v %s", ok, errs)
	}
	g.must("md-namespace-update", "ns1", "--protected", "false", "--visibility", "private")
	if _, errs, ok := member.run("md-namespace-show", "ns1"); ok || !strings.Contains(errs, "404") {
		t.Fatalf("member shows a private namespace of another project: %v %s", ok, errs)
	}
	g.must("md-object-delete", "ns1", "obj1")
	g.must("md-property-delete", "ns1", "prop1")
	g.must("md-tag-delete", "ns1", "a")
	g.must("md-resource-type-deassociate", "ns1", "OS::Glance::Image")
	out = g.must("md-namespace-show", "ns1")
	if field(t, out, "tags") != `["b"]` || strings.Contains(out, "objects") || strings.Contains(out, "resource_type_associations") {
		t.Fatalf("after deletes:\n%s", out)
	}
	g.must("md-namespace-delete", "ns1")
	if _, errs, ok := g.run("md-namespace-show", "ns1"); ok || !strings.Contains(errs, "404") {
		t.Fatalf("deleted namespace shows: %v %s", ok, errs)
	}
	if _, errs, ok := g.run("md-namespace-show", "nothere"); ok || !strings.Contains(errs, "Metadata definition namespace=nothere was not found.") {
		t.Fatalf("unknown namespace: %v %s", ok, errs)
	}
}
