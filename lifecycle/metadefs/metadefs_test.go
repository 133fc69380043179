package metadefs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/metadefs"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
)

var (
	admin  = lifecycle.Principal{Project: "admin", Admin: true, Roles: []string{"admin"}}
	owner  = lifecycle.Principal{Project: "p1", Roles: []string{"member"}}
	other  = lifecycle.Principal{Project: "p2", Roles: []string{"member"}}
	glance = "/etc/glance/metadefs" // Debian's glance-common
)

func newService(t testing.TB) *metadefs.Service {
	t.Helper()
	db, err := badgerkv.Open("", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return metadefs.New(db, nil)
}

func mustCreate(t *testing.T, s *metadefs.Service, body string) *metadefs.Detail {
	t.Helper()
	d, err := metadefs.DecodeNamespace([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.CreateNamespace(t.Context(), admin, d)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLoadGlanceDefinitions(t *testing.T) {
	files, err := metadefs.DefinitionFiles(glance)
	if err != nil {
		t.Fatalf("%v (scripts/install-deps installs glance-common)", err)
	}
	s := newService(t)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, loaded, err := s.Load(t.Context(), admin, raw); err != nil || !loaded {
			t.Fatalf("%s: loaded %v, %v", f, loaded, err)
		}
	}
	list, err := s.ListNamespaces(t.Context(), admin, metadefs.ListOptions{})
	if err != nil || len(list) != len(files) {
		t.Fatalf("admin sees %d namespaces (%v), want the %d loaded", len(list), err, len(files))
	}
	// Two of Glance's files name no visibility: private to the admin
	// project, as glance-manage leaves them.
	public := 0
	for _, d := range list {
		if d.Visibility == "public" {
			public++
		}
	}
	list, err = s.ListNamespaces(t.Context(), other, metadefs.ListOptions{})
	if err != nil || len(list) != public || public == 0 {
		t.Fatalf("another project sees %d namespaces (%v), want the %d public ones", len(list), err, public)
	}
	// A second load skips every namespace and changes nothing.
	raw, _ := os.ReadFile(files[0])
	if ns, loaded, err := s.Load(t.Context(), admin, raw); err != nil || loaded {
		t.Fatalf("reload of %s: loaded %v, %v; want skipped", ns, loaded, err)
	}
	rts, err := s.ListResourceTypes(t.Context(), other)
	if err != nil || len(rts) == 0 {
		t.Fatalf("resource types after load: %v, %v", rts, err)
	}
	for _, rt := range rts {
		if !rt.Protected {
			t.Errorf("resource type %s from a definition file is not protected", rt.Name)
		}
	}
}

func TestVisibilityAndPolicy(t *testing.T) {
	s := newService(t)
	mustCreate(t, s, `{"namespace": "priv", "owner": "p1", "objects": [{"name": "o1"}], "tags": [{"name": "t1"}]}`)
	mustCreate(t, s, `{"namespace": "pub", "visibility": "public", "owner": "p1"}`)

	if _, err := s.GetNamespace(t.Context(), owner, "priv"); err != nil {
		t.Errorf("owner project cannot see its private namespace: %v", err)
	}
	if _, err := s.GetNamespace(t.Context(), other, "priv"); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("another project sees a private namespace: %v", err)
	}
	if _, err := s.ListObjects(t.Context(), other, "priv", metadefs.Page{}); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("another project lists a private namespace's objects: %v", err)
	}
	if _, err := s.GetNamespace(t.Context(), other, "pub"); err != nil {
		t.Errorf("public namespace hidden: %v", err)
	}
	list, _ := s.ListNamespaces(t.Context(), other, metadefs.ListOptions{})
	if len(list) != 1 || list[0].Namespace.Namespace != "pub" {
		t.Errorf("another project lists %v, want only pub", list)
	}
	// Writes are admin-only, even for the owner; an invisible namespace
	// is not found rather than forbidden.
	if _, err := s.CreateObject(t.Context(), owner, "priv", metadefs.Object{Name: "x"}); !errors.Is(err, lifecycle.ErrForbidden) {
		t.Errorf("owner creates an object: %v", err)
	}
	if _, err := s.CreateTag(t.Context(), other, "priv", "x"); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("another project writes into a private namespace: %v", err)
	}
	if err := s.DeleteNamespace(t.Context(), owner, "pub"); !errors.Is(err, lifecycle.ErrForbidden) {
		t.Errorf("owner deletes a namespace: %v", err)
	}
	if _, err := s.CreateNamespace(t.Context(), owner, metadefs.Detail{Namespace: metadefs.Namespace{Namespace: "mine"}}); !errors.Is(err, lifecycle.ErrForbidden) {
		t.Errorf("non-admin creates a namespace: %v", err)
	}
}

func TestProtectedDuplicateRename(t *testing.T) {
	s := newService(t)
	mustCreate(t, s, `{"namespace": "ns", "protected": true, "objects": [{"name": "o1"}], "properties": {"p1": {"title": "P", "type": "string"}}}`)
	if err := s.DeleteNamespace(t.Context(), admin, "ns"); !errors.Is(err, lifecycle.ErrForbidden) {
		t.Fatalf("protected namespace deleted: %v", err)
	}
	if err := s.DeleteObject(t.Context(), admin, "ns", "o1"); !errors.Is(err, lifecycle.ErrForbidden) {
		t.Fatalf("object of a protected namespace deleted: %v", err)
	}
	d, _ := metadefs.DecodeNamespace([]byte(`{"namespace": "ns"}`))
	if _, err := s.CreateNamespace(t.Context(), admin, d); !errors.Is(err, metadefs.ErrDuplicate) {
		t.Fatalf("duplicate namespace: %v", err)
	}
	// A duplicate within the contents leaves nothing behind.
	d, _ = metadefs.DecodeNamespace([]byte(`{"namespace": "half", "tags": [{"name": "a"}, {"name": "a"}]}`))
	if _, err := s.CreateNamespace(t.Context(), admin, d); !errors.Is(err, metadefs.ErrDuplicate) {
		t.Fatalf("duplicate tags: %v", err)
	}
	if _, err := s.GetNamespace(t.Context(), admin, "half"); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Fatalf("a refused create left its namespace: %v", err)
	}
	// Renaming moves the contents; unprotecting lets it go.
	if _, err := s.UpdateNamespace(t.Context(), admin, "ns", metadefs.Namespace{Namespace: "ns2"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetNamespace(t.Context(), admin, "ns2")
	if err != nil || len(got.Objects) != 1 || len(got.Properties) != 1 || got.Protected {
		t.Fatalf("after rename: %+v, %v", got, err)
	}
	if _, err := s.GetObject(t.Context(), admin, "ns", "o1"); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Fatalf("old name still holds the object: %v", err)
	}
	if err := s.DeleteNamespace(t.Context(), admin, "ns2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetObject(t.Context(), admin, "ns2", "o1"); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Fatalf("object outlived its namespace: %v", err)
	}
}

func TestTagsAppend(t *testing.T) {
	s := newService(t)
	mustCreate(t, s, `{"namespace": "ns", "tags": [{"name": "old"}]}`)
	if _, err := s.CreateTags(t.Context(), admin, "ns", []string{"a", "b"}, true); err != nil {
		t.Fatal(err)
	}
	if tags, _ := s.ListTags(t.Context(), admin, "ns", metadefs.Page{}); len(tags) != 3 {
		t.Fatalf("append kept %v, want old, a, b", tags)
	}
	if _, err := s.CreateTags(t.Context(), admin, "ns", []string{"c"}, false); err != nil {
		t.Fatal(err)
	}
	if tags, _ := s.ListTags(t.Context(), admin, "ns", metadefs.Page{}); len(tags) != 1 || tags[0].Name != "c" {
		t.Fatalf("replace left %v, want c", tags)
	}
	if _, err := s.CreateTags(t.Context(), admin, "ns", []string{"c"}, true); !errors.Is(err, metadefs.ErrDuplicate) {
		t.Fatalf("appending an existing tag: %v", err)
	}
}

func TestDecodeRefusals(t *testing.T) {
	for _, body := range []string{
		`{`,
		`[]`,
		`{"display_name": "no namespace"}`,
		`{"namespace": "` + string(make([]byte, 81)) + `"}`,
		`{"namespace": "x", "visibility": "shared"}`,
		`{"namespace": "x", "unknown": 1}`,
		`{"namespace": "x", "properties": {"p": {"type": "string"}}}`,
	} {
		if _, err := metadefs.DecodeNamespace([]byte(body)); !errors.Is(err, lifecycle.ErrInvalid) {
			t.Errorf("%.40q: %v, want invalid", body, err)
		}
	}
	if _, err := metadefs.DecodeNamespace([]byte(`{"namespace": "x", "created_at": "now"}`)); !errors.Is(err, lifecycle.ErrForbidden) {
		t.Errorf("read-only created_at: %v", err)
	}
	if _, err := metadefs.DecodeObject([]byte(`{"name": "o", "properties": {"p": {"title": "t"}}}`), true); !errors.Is(err, lifecycle.ErrInvalid) {
		t.Errorf("object property without a type: %v", err)
	}
}

// TestConcurrentCreates: racing creates of one namespace, and of one tag,
// end with exactly one winner each; the others are duplicates.
func TestConcurrentCreates(t *testing.T) {
	s := newService(t)
	const n = 16
	errs := make(chan error, 2*n)
	for range n {
		go func() {
			_, err := s.CreateNamespace(t.Context(), admin, metadefs.Detail{Namespace: metadefs.Namespace{Namespace: "race"}})
			errs <- err
		}()
	}
	won := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			won++
		case !errors.Is(err, metadefs.ErrDuplicate):
			t.Fatalf("racing create: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d racing creates of one namespace succeeded", won)
	}
	for range n {
		go func() { _, err := s.CreateTag(t.Context(), admin, "race", "t"); errs <- err }()
	}
	won = 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			won++
		case !errors.Is(err, metadefs.ErrDuplicate):
			t.Fatalf("racing tag create: %v", err)
		}
	}
	if tags, _ := s.ListTags(t.Context(), admin, "race", metadefs.Page{}); won != 1 || len(tags) != 1 {
		t.Fatalf("%d racing tag creates succeeded, %d tags", won, len(tags))
	}
}

// TestHugeBodies: a body of 250,000 items (2.5 MB) is checked in one pass, and a
// duplicate among them is still found.
func TestHugeBodies(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"namespace": "big", "objects": [{"name": "o", "required": [`)
	for i := range 250000 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"r%d"`, i)
	}
	// The bound is relative to decoding the same body with encoding/json
	// alone, in the same run: linear checks cost a small multiple of it
	// whatever the machine's load; a quadratic one costs thousands.
	body := []byte(b.String() + `]}]}`)
	start := time.Now()
	var plain any
	if err := json.Unmarshal(body, &plain); err != nil {
		t.Fatal(err)
	}
	baseline := time.Since(start)
	start = time.Now()
	if _, err := metadefs.DecodeNamespace(body); err != nil {
		t.Fatal(err)
	}
	if _, err := metadefs.DecodeNamespace([]byte(b.String() + `,"r7"]}]}`)); !errors.Is(err, lifecycle.ErrInvalid) {
		t.Fatalf("a repeated required name: %v", err)
	}
	took := time.Since(start)
	t.Logf("two quarter-million-item bodies: %v; encoding/json alone, one body: %v", took, baseline)
	if took > 40*baseline {
		t.Fatalf("two quarter-million-item bodies took %v, %.0f times encoding/json's %v for one", took, float64(took)/float64(baseline), baseline)
	}
}

// TestFullNamespace: a namespace grows to its bound, is refused past it
// (nothing written), and can still be renamed and deleted, each one
// registry transaction.
func TestFullNamespace(t *testing.T) {
	db, err := badgerkv.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := metadefs.New(db, nil)
	mustCreate(t, s, `{"namespace": "full"}`)
	long := strings.Repeat("x", 60)
	total := 0
	for batch := 0; ; batch++ {
		var names []string
		for i := range 10 {
			names = append(names, fmt.Sprintf("%s-%d-%d", long, batch, i))
		}
		_, err := s.CreateTags(t.Context(), admin, "full", names, true)
		if errors.Is(err, lifecycle.ErrTooLarge) {
			break
		}
		if err != nil {
			t.Fatalf("after %d tags: %v", total, err)
		}
		total += len(names)
		if batch > 100 {
			t.Fatal("no bound on a namespace's size")
		}
	}
	for i := 0; ; i++ { // then one by one up to the bound
		if _, err := s.CreateTag(t.Context(), admin, "full", fmt.Sprintf("%s-single-%d", long, i)); errors.Is(err, lifecycle.ErrTooLarge) {
			break
		} else if err != nil || i > 100 {
			t.Fatalf("single tag %d: %v", i, err)
		}
		total++
	}
	if tags, _ := s.ListTags(t.Context(), admin, "full", metadefs.Page{}); len(tags) != total || total < 50 {
		t.Fatalf("%d tags kept, %d accepted", len(tags), total)
	}
	if _, err := s.UpdateNamespace(t.Context(), admin, "full", metadefs.Namespace{Namespace: "renamed"}); err != nil {
		t.Fatalf("rename of a full namespace: %v", err)
	}
	if tags, _ := s.ListTags(t.Context(), admin, "renamed", metadefs.Page{}); len(tags) != total {
		t.Fatalf("rename kept %d of %d tags", len(tags), total)
	}
	if err := s.DeleteNamespace(t.Context(), admin, "renamed"); err != nil {
		t.Fatalf("delete of a full namespace: %v", err)
	}
}
