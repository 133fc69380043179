package metadefs_test

import (
	"errors"
	"testing"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/metadefs"
)

// FuzzDecodeNamespace: any body is either refused with a client error or
// creates a namespace that then shows, and deletes, whole.
func FuzzDecodeNamespace(f *testing.F) {
	for _, seed := range []string{
		`{"namespace": "n"}`,
		`{"namespace": "n", "visibility": "public", "protected": false, "owner": "p"}`,
		`{"namespace": "n", "properties": {"p": {"title": "t", "type": "array", "items": {"type": "string", "enum": ["a"]}, "minItems": 1}}}`,
		`{"namespace": "n", "objects": [{"name": "o", "required": ["a"], "properties": {"a": {"title": "A", "type": "integer", "minimum": 0, "default": 3}}}]}`,
		`{"namespace": "n", "tags": [{"name": "t"}, {"name": "t"}]}`,
		`{"namespace": "n", "resource_type_associations": [{"name": "OS::Glance::Image", "prefix": "x_", "properties_target": "image"}]}`,
		`{"namespace": "\u0000"}`,
		`{"namespace": "n", "properties": {"p": {"title": "t", "type": null}}}`,
		`{"namespace": 1e400}`,
		`[[[[[[[[[[]]]]]]]]]]`,
	} {
		f.Add([]byte(seed))
	}
	s := newService(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := metadefs.DecodeNamespace(raw)
		if err != nil {
			if !errors.Is(err, lifecycle.ErrInvalid) && !errors.Is(err, lifecycle.ErrForbidden) {
				t.Fatalf("refusal %v is not a client error", err)
			}
			return
		}
		created, err := s.CreateNamespace(t.Context(), admin, d)
		if err != nil {
			if !errors.Is(err, lifecycle.ErrInvalid) && !errors.Is(err, metadefs.ErrDuplicate) && !errors.Is(err, lifecycle.ErrTooLarge) {
				t.Fatalf("create refused with %v", err)
			}
			return
		}
		name := created.Namespace.Namespace
		got, err := s.GetNamespace(t.Context(), admin, name)
		if err != nil || len(got.Objects) != len(d.Objects) || len(got.Tags) != len(d.Tags) || len(got.Properties) != len(d.Properties) {
			t.Fatalf("show after create: %+v, %v", got, err)
		}
		if err := s.DeleteNamespace(t.Context(), admin, name); err != nil && !errors.Is(err, lifecycle.ErrForbidden) {
			t.Fatal(err)
		}
		if created.Protected {
			if _, err := s.UpdateNamespace(t.Context(), admin, name, metadefs.Namespace{Namespace: name}); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteNamespace(t.Context(), admin, name); err != nil {
				t.Fatal(err)
			}
		}
	})
}
