package metadefs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"slices"
	"strings"
	"time"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
	"github.com/glimpse-project/glimpse/meta/kv"
)

// kindText holds Glance's messages about one kind of record; each format
// takes the record's name, then the namespace's.
type kindText struct{ notFound, duplicate, protected string }

var kindTexts = map[meta.MetadefKind]kindText{
	meta.MetadefObject: {
		notFound:  "The metadata definition object with name=%s was not found in namespace=%s.",
		duplicate: "A metadata definition object with name=%s already exists in namespace=%s.",
		protected: "Metadata definition object %s is protected and cannot be deleted.",
	},
	meta.MetadefProperty: {
		notFound:  "The metadata definition property with name=%s was not found in namespace=%s.",
		duplicate: "A metadata definition property with name=%s already exists in namespace=%s.",
		protected: "Metadata definition property %s is protected and cannot be deleted.",
	},
	meta.MetadefTag: {
		notFound:  "The metadata definition tag with name=%s was not found in namespace=%s.",
		duplicate: "A metadata tag with name=%s already exists in namespace=%s.",
		protected: "Metadata definition tag %s is protected and cannot be deleted.",
	},
	meta.MetadefAssociation: {
		notFound:  "The metadata definition resource-type association of resource-type=%s to namespace=%s, was not found.",
		duplicate: "The metadata definition resource-type association of resource-type=%s to namespace=%s, already exists.",
		protected: "Metadata definition resource-type-association %s is protected and cannot be deleted.",
	},
}

func recordNotFound(k meta.MetadefKind, ns, name string) error {
	return refuse(lifecycle.ErrNotFound, kindTexts[k].notFound, name, ns)
}

func getRecord[T any, P recordPtr[T]](tx kv.Txn, k meta.MetadefKind, ns, name string) (*T, error) {
	var v T
	err := getJSON(tx, meta.MetadefMemberKey(k, ns, name), &v)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, recordNotFound(k, ns, name)
	}
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// listRecords returns the namespace's records of kind k, oldest first
// (by name among those created together).
func listRecords[T any, P recordPtr[T]](tx kv.Txn, k meta.MetadefKind, ns string) ([]T, error) {
	var out []T
	err := tx.Scan(meta.MetadefMemberKey(k, ns, ""), func(key, value []byte) error {
		var v T
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("metadefs record %q: %w", key, err)
		}
		out = append(out, v)
		return nil
	})
	slices.SortStableFunc(out, func(a, b T) int { return P(&a).created().Compare(P(&b).created()) })
	return out, err
}

func insertRecord(tx kv.Txn, rm *room, k meta.MetadefKind, ns string, r record, now time.Time) error {
	key := meta.MetadefMemberKey(k, ns, r.recordName())
	if _, err := tx.Get(key); err == nil {
		return refuse(ErrDuplicate, kindTexts[k].duplicate, r.recordName(), ns)
	} else if !errors.Is(err, kv.ErrNotFound) {
		return err
	}
	r.stamp(now, now)
	return rm.put(tx, ns, key, r, 1)
}

// replaceRecord stores r in place of the record old (renaming it when
// r's name differs), keeping its creation time.
func replaceRecord(tx kv.Txn, rm *room, k meta.MetadefKind, ns, old string, r record, created, now time.Time) error {
	if r.recordName() != old {
		if _, err := tx.Get(meta.MetadefMemberKey(k, ns, r.recordName())); err == nil {
			return refuse(ErrDuplicate, kindTexts[k].duplicate, r.recordName(), ns)
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		if err := tx.Delete(meta.MetadefMemberKey(k, ns, old)); err != nil {
			return err
		}
	}
	r.stamp(created, now)
	return rm.put(tx, ns, meta.MetadefMemberKey(k, ns, r.recordName()), r, 0)
}

// readable opens a read of the namespace's records: the namespace must be
// visible and the rule must allow it.
func (s *Service) readable(tx kv.Txn, p lifecycle.Principal, ns string, rule string) (*Namespace, error) {
	n, err := s.visibleNamespace(tx, p, ns)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(p, rule, n); err != nil {
		return nil, err
	}
	return n, nil
}

// writable opens a change to the namespace's records.
func (s *Service) writable(tx kv.Txn, p lifecycle.Principal, ns string, rule string) (*Namespace, error) {
	n, err := s.visibleNamespace(tx, p, ns)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(p, rule, n); err != nil {
		return nil, err
	}
	return n, nil
}

// Page selects and orders a listing of a namespace's objects or tags, as
// Glance's query parameters do: sorted by created_at (default),
// updated_at or name, newest first unless SortDir is asc; Marker is the
// name the page starts after; Limit 0 is no limit.
type Page struct {
	Marker  string
	Limit   int
	SortKey string
	SortDir string
}

func page[T any, P recordPtr[T]](list []T, pg Page, k meta.MetadefKind, ns string) ([]T, error) {
	key := pg.SortKey
	if key == "" {
		key = "created_at"
	}
	if key != "created_at" && key != "updated_at" && key != "name" {
		return nil, refuse(lifecycle.ErrInvalid, "Invalid sort key: %s. It must be one of the following: created_at, updated_at, name.", key)
	}
	desc := pg.SortDir == "" || pg.SortDir == "desc"
	if !desc && pg.SortDir != "asc" {
		return nil, refuse(lifecycle.ErrInvalid, "Invalid sort direction: %s", pg.SortDir)
	}
	slices.SortStableFunc(list, func(a, b T) int {
		pa, pb := P(&a), P(&b)
		c := 0
		switch key {
		case "created_at":
			c = pa.created().Compare(pb.created())
		case "updated_at":
			c = pa.updated().Compare(pb.updated())
		}
		if c == 0 {
			c = strings.Compare(pa.recordName(), pb.recordName())
		}
		if desc {
			c = -c
		}
		return c
	})
	if pg.Marker != "" {
		i := slices.IndexFunc(list, func(v T) bool { return P(&v).recordName() == pg.Marker })
		if i < 0 {
			return nil, recordNotFound(k, ns, pg.Marker)
		}
		list = list[i+1:]
	}
	if pg.Limit > 0 && len(list) > pg.Limit {
		list = list[:pg.Limit]
	}
	return list, nil
}

// Objects.

func (s *Service) ListObjects(ctx context.Context, p lifecycle.Principal, ns string, pg Page) ([]Object, error) {
	var out []Object
	err := s.view(ctx, func(tx kv.Txn) error {
		if _, err := s.readable(tx, p, ns, policy.GetMetadefObjects); err != nil {
			return err
		}
		var err error
		all, err := listRecords[Object](tx, meta.MetadefObject, ns)
		if err != nil {
			return err
		}
		out, err = page(all, pg, meta.MetadefObject, ns)
		return err
	})
	return out, err
}

func (s *Service) GetObject(ctx context.Context, p lifecycle.Principal, ns, name string) (*Object, error) {
	var out *Object
	err := s.view(ctx, func(tx kv.Txn) error {
		if _, err := s.readable(tx, p, ns, policy.GetMetadefObject); err != nil {
			return err
		}
		var err error
		out, err = getRecord[Object](tx, meta.MetadefObject, ns, name)
		return err
	})
	return out, err
}

func (s *Service) CreateObject(ctx context.Context, p lifecycle.Principal, ns string, o Object) (*Object, error) {
	if err := checkObject(&o); err != nil {
		return nil, err
	}
	err := s.update(ctx, func(tx kv.Txn) error {
		if _, err := s.writable(tx, p, ns, policy.AddMetadefObject); err != nil {
			return err
		}
		rm, err := roomOf(tx, ns, "")
		if err != nil {
			return err
		}
		return insertRecord(tx, rm, meta.MetadefObject, ns, &o, s.now())
	})
	if err != nil {
		return nil, err
	}
	return &o, nil
}

func (s *Service) UpdateObject(ctx context.Context, p lifecycle.Principal, ns, name string, o Object) (*Object, error) {
	if err := checkObject(&o); err != nil {
		return nil, err
	}
	err := s.update(ctx, func(tx kv.Txn) error {
		if _, err := s.writable(tx, p, ns, policy.ModifyMetadefObject); err != nil {
			return err
		}
		old, err := getRecord[Object](tx, meta.MetadefObject, ns, name)
		if err != nil {
			return err
		}
		rm, err := roomOf(tx, ns, "")
		if err != nil {
			return err
		}
		return replaceRecord(tx, rm, meta.MetadefObject, ns, name, &o, old.CreatedAt, s.now())
	})
	if err != nil {
		return nil, err
	}
	return &o, nil
}

func (s *Service) DeleteObject(ctx context.Context, p lifecycle.Principal, ns, name string) error {
	return s.deleteRecord(ctx, p, meta.MetadefObject, ns, name, policy.DeleteMetadefObject)
}

func (s *Service) deleteRecord(ctx context.Context, p lifecycle.Principal, k meta.MetadefKind, ns, name string, rule string) error {
	return s.update(ctx, func(tx kv.Txn) error {
		n, err := s.writable(tx, p, ns, rule)
		if err != nil {
			return err
		}
		key := meta.MetadefMemberKey(k, ns, name)
		if _, err := tx.Get(key); errors.Is(err, kv.ErrNotFound) {
			return recordNotFound(k, ns, name)
		} else if err != nil {
			return err
		}
		if n.Protected {
			return refuse(lifecycle.ErrForbidden, kindTexts[k].protected, name)
		}
		return tx.Delete(key)
	})
}

// Properties.

func (s *Service) ListProperties(ctx context.Context, p lifecycle.Principal, ns string) ([]Property, error) {
	var out []Property
	err := s.view(ctx, func(tx kv.Txn) error {
		if _, err := s.readable(tx, p, ns, policy.GetMetadefProperties); err != nil {
			return err
		}
		var err error
		out, err = listRecords[Property](tx, meta.MetadefProperty, ns)
		return err
	})
	return out, err
}

// GetProperty returns the property; with a resource type, name carries the
// prefix of the namespace's association with it, as Glance's
// ?resource_type= does.
func (s *Service) GetProperty(ctx context.Context, p lifecycle.Principal, ns, name, resourceType string) (*Property, error) {
	var out *Property
	err := s.view(ctx, func(tx kv.Txn) error {
		n, err := s.readable(tx, p, ns, policy.GetMetadefProperty)
		if err != nil {
			return err
		}
		if resourceType != "" {
			if !s.allowed(p, policy.GetMetadefResourceType, n) {
				return refuse(lifecycle.ErrForbidden, "You are not authorized to complete this action.")
			}
			a, err := getRecord[Association](tx, meta.MetadefAssociation, ns, resourceType)
			if err != nil {
				return err
			}
			if a.Prefix == "" || !strings.HasPrefix(name, a.Prefix) {
				return refuse(lifecycle.ErrNotFound, "Property %s does not start with the expected resource type association prefix of '%s'.", name, a.Prefix)
			}
			name = name[len(a.Prefix):]
		}
		out, err = getRecord[Property](tx, meta.MetadefProperty, ns, name)
		return err
	})
	return out, err
}

func (s *Service) CreateProperty(ctx context.Context, p lifecycle.Principal, ns string, pr Property) (*Property, error) {
	if err := checkName("property name", pr.Name, maxNameLen); err != nil {
		return nil, err
	}
	err := s.update(ctx, func(tx kv.Txn) error {
		if _, err := s.writable(tx, p, ns, policy.AddMetadefProperty); err != nil {
			return err
		}
		rm, err := roomOf(tx, ns, "")
		if err != nil {
			return err
		}
		return insertRecord(tx, rm, meta.MetadefProperty, ns, &pr, s.now())
	})
	if err != nil {
		return nil, err
	}
	return &pr, nil
}

func (s *Service) UpdateProperty(ctx context.Context, p lifecycle.Principal, ns, name string, pr Property) (*Property, error) {
	if err := checkName("property name", pr.Name, maxNameLen); err != nil {
		return nil, err
	}
	err := s.update(ctx, func(tx kv.Txn) error {
		if _, err := s.writable(tx, p, ns, policy.ModifyMetadefProperty); err != nil {
			return err
		}
		old, err := getRecord[Property](tx, meta.MetadefProperty, ns, name)
		if err != nil {
			return err
		}
		rm, err := roomOf(tx, ns, "")
		if err != nil {
			return err
		}
		return replaceRecord(tx, rm, meta.MetadefProperty, ns, name, &pr, old.CreatedAt, s.now())
	})
	if err != nil {
		return nil, err
	}
	return &pr, nil
}

func (s *Service) DeleteProperty(ctx context.Context, p lifecycle.Principal, ns, name string) error {
	return s.deleteRecord(ctx, p, meta.MetadefProperty, ns, name, policy.RemoveMetadefProperty)
}

// Tags.

func (s *Service) ListTags(ctx context.Context, p lifecycle.Principal, ns string, pg Page) ([]Tag, error) {
	var out []Tag
	err := s.view(ctx, func(tx kv.Txn) error {
		if _, err := s.readable(tx, p, ns, policy.GetMetadefTags); err != nil {
			return err
		}
		var err error
		all, err := listRecords[Tag](tx, meta.MetadefTag, ns)
		if err != nil {
			return err
		}
		out, err = page(all, pg, meta.MetadefTag, ns)
		return err
	})
	return out, err
}

func (s *Service) GetTag(ctx context.Context, p lifecycle.Principal, ns, name string) (*Tag, error) {
	var out *Tag
	err := s.view(ctx, func(tx kv.Txn) error {
		if _, err := s.readable(tx, p, ns, policy.GetMetadefTag); err != nil {
			return err
		}
		var err error
		out, err = getRecord[Tag](tx, meta.MetadefTag, ns, name)
		return err
	})
	return out, err
}

func (s *Service) CreateTag(ctx context.Context, p lifecycle.Principal, ns, name string) (*Tag, error) {
	if err := checkName("tag name", name, maxNameLen); err != nil {
		return nil, err
	}
	t := Tag{Name: name}
	err := s.update(ctx, func(tx kv.Txn) error {
		if _, err := s.writable(tx, p, ns, policy.AddMetadefTag); err != nil {
			return err
		}
		rm, err := roomOf(tx, ns, "")
		if err != nil {
			return err
		}
		return insertRecord(tx, rm, meta.MetadefTag, ns, &t, s.now())
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// CreateTags creates the tags at once; unless appending, the namespace's
// other tags are deleted first (X-Openstack-Append). A duplicate among
// them, or of a kept tag, refuses the whole request.
func (s *Service) CreateTags(ctx context.Context, p lifecycle.Principal, ns string, names []string, appending bool) ([]Tag, error) {
	for _, n := range names {
		if err := checkName("tag name", n, maxNameLen); err != nil {
			return nil, err
		}
	}
	var out []Tag
	err := s.update(ctx, func(tx kv.Txn) error {
		out = nil
		if _, err := s.writable(tx, p, ns, policy.AddMetadefTags); err != nil {
			return err
		}
		var except meta.MetadefKind // the tags are replaced: their room is free
		if !appending {
			except = meta.MetadefTag
		}
		rm, err := roomOf(tx, ns, except)
		if err != nil {
			return err
		}
		if !appending {
			if err := deleteAll(tx, meta.MetadefTag, ns); err != nil {
				return err
			}
		}
		now := s.now()
		for _, n := range names {
			t := Tag{Name: n}
			if err := insertRecord(tx, rm, meta.MetadefTag, ns, &t, now); err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

func (s *Service) UpdateTag(ctx context.Context, p lifecycle.Principal, ns, name, newName string) (*Tag, error) {
	if err := checkName("tag name", newName, maxNameLen); err != nil {
		return nil, err
	}
	t := Tag{Name: newName}
	err := s.update(ctx, func(tx kv.Txn) error {
		if _, err := s.writable(tx, p, ns, policy.ModifyMetadefTag); err != nil {
			return err
		}
		old, err := getRecord[Tag](tx, meta.MetadefTag, ns, name)
		if err != nil {
			return err
		}
		rm, err := roomOf(tx, ns, "")
		if err != nil {
			return err
		}
		return replaceRecord(tx, rm, meta.MetadefTag, ns, name, &t, old.CreatedAt, s.now())
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func (s *Service) DeleteTag(ctx context.Context, p lifecycle.Principal, ns, name string) error {
	return s.deleteRecord(ctx, p, meta.MetadefTag, ns, name, policy.DeleteMetadefTag)
}

// Resource types and associations.

// ListResourceTypes returns every resource type, oldest first.
func (s *Service) ListResourceTypes(ctx context.Context, p lifecycle.Principal) ([]ResourceType, error) {
	if !s.allowed(p, policy.ListMetadefResourceTypes, nil) {
		return nil, refuse(lifecycle.ErrForbidden, "You are not authorized to complete this action.")
	}
	var out []ResourceType
	err := s.view(ctx, func(tx kv.Txn) error {
		out = nil
		return tx.Scan(meta.MetadefResourceTypeKey(""), func(key, value []byte) error {
			var rt ResourceType
			if err := json.Unmarshal(value, &rt); err != nil {
				return fmt.Errorf("metadefs record %q: %w", key, err)
			}
			out = append(out, rt)
			return nil
		})
	})
	slices.SortStableFunc(out, func(a, b ResourceType) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, err
}

func ensureResourceType(tx kv.Txn, name string, seeded bool, now time.Time) error {
	key := meta.MetadefResourceTypeKey(name)
	if _, err := tx.Get(key); err == nil {
		return nil
	} else if !errors.Is(err, kv.ErrNotFound) {
		return err
	}
	return putJSON(tx, key, &ResourceType{Name: name, Protected: seeded, CreatedAt: now, UpdatedAt: now})
}

func (s *Service) ListAssociations(ctx context.Context, p lifecycle.Principal, ns string) ([]Association, error) {
	var out []Association
	err := s.view(ctx, func(tx kv.Txn) error {
		n, err := s.readable(tx, p, ns, policy.ListMetadefResourceTypes)
		if err != nil {
			return err
		}
		all, err := listRecords[Association](tx, meta.MetadefAssociation, ns)
		if !s.allowed(p, policy.GetMetadefResourceType, n) {
			all = nil
		}
		out = all
		return err
	})
	return out, err
}

// Associate ties the namespace to a resource type, creating the type if
// it is new.
func (s *Service) Associate(ctx context.Context, p lifecycle.Principal, ns string, a Association) (*Association, error) {
	if err := checkName("resource type name", a.Name, maxNameLen); err != nil {
		return nil, err
	}
	err := s.update(ctx, func(tx kv.Txn) error {
		if _, err := s.writable(tx, p, ns, policy.AddMetadefResourceTypeAssociation); err != nil {
			return err
		}
		now := s.now()
		if err := ensureResourceType(tx, a.Name, false, now); err != nil {
			return err
		}
		rm, err := roomOf(tx, ns, "")
		if err != nil {
			return err
		}
		return insertRecord(tx, rm, meta.MetadefAssociation, ns, &a, now)
	})
	if err != nil {
		return nil, err
	}
	return &a, nil
}

func (s *Service) Dissociate(ctx context.Context, p lifecycle.Principal, ns, resourceType string) error {
	err := s.deleteRecord(ctx, p, meta.MetadefAssociation, ns, resourceType, policy.RemoveMetadefResourceTypeAssociation)
	if errors.Is(err, lifecycle.ErrNotFound) && !errors.Is(err, errNamespaceNotFound) {
		return refuse(lifecycle.ErrNotFound, "Failed to find resource type %s to delete", resourceType)
	}
	return err
}
