package metadefs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/policy"
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
	err := scanJSON(tx, meta.MetadefMemberKey(k, ns, ""), func(v T) { out = append(out, v) })
	slices.SortStableFunc(out, func(a, b T) int { return P(&a).created().Compare(P(&b).created()) })
	return out, err
}

func insertRecord(tx kv.Txn, rm *room, k meta.MetadefKind, ns string, r record, now time.Time) error {
	key := meta.MetadefMemberKey(k, ns, r.recordName())
	if err := absent(tx, key, refuse(ErrDuplicate, kindTexts[k].duplicate, r.recordName(), ns)); err != nil {
		return err
	}
	r.stamp(now, now)
	return rm.put(tx, ns, key, r, 1)
}

// replaceRecord stores r in place of the record old (renaming it when
// r's name differs), keeping its creation time.
func replaceRecord(tx kv.Txn, rm *room, k meta.MetadefKind, ns, old string, r record, created, now time.Time) error {
	if r.recordName() != old {
		if err := absent(tx, meta.MetadefMemberKey(k, ns, r.recordName()), refuse(ErrDuplicate, kindTexts[k].duplicate, r.recordName(), ns)); err != nil {
			return err
		}
		if err := tx.Delete(meta.MetadefMemberKey(k, ns, old)); err != nil {
			return err
		}
	}
	r.stamp(created, now)
	return rm.put(tx, ns, meta.MetadefMemberKey(k, ns, r.recordName()), r, 0)
}

// namespaceFor opens a read or a change of the namespace's records: the
// namespace must be visible and the rule must allow it.
func (s *Service) namespaceFor(tx kv.Txn, p lifecycle.Principal, ns string, rule string) (*Namespace, error) {
	n, err := s.visibleNamespace(tx, p, ns)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(p, rule, n); err != nil {
		return nil, err
	}
	return n, nil
}

// records are the calls every kind of record shares: each is one
// transaction that opens the namespace under the rule its caller names
// (Glance's, for that kind and call), then reads or writes the records
// of kind k. Each kind's exported calls check their own input first.
type records[T any, P recordPtr[T]] struct {
	s *Service
	k meta.MetadefKind
}

func (rs records[T, P]) list(ctx context.Context, p lifecycle.Principal, ns, rule string) ([]T, error) {
	var out []T
	err := rs.s.view(ctx, func(tx kv.Txn) error {
		if _, err := rs.s.namespaceFor(tx, p, ns, rule); err != nil {
			return err
		}
		var err error
		out, err = listRecords[T, P](tx, rs.k, ns)
		return err
	})
	return out, err
}

func (rs records[T, P]) get(ctx context.Context, p lifecycle.Principal, ns, name, rule string) (*T, error) {
	var out *T
	err := rs.s.view(ctx, func(tx kv.Txn) error {
		if _, err := rs.s.namespaceFor(tx, p, ns, rule); err != nil {
			return err
		}
		var err error
		out, err = getRecord[T, P](tx, rs.k, ns, name)
		return err
	})
	return out, err
}

// create adds r to the namespace and returns it as stored.
func (rs records[T, P]) create(ctx context.Context, p lifecycle.Principal, ns, rule string, r T) (*T, error) {
	err := rs.s.update(ctx, func(tx kv.Txn) error {
		if _, err := rs.s.namespaceFor(tx, p, ns, rule); err != nil {
			return err
		}
		rm, err := roomOf(tx, ns, "")
		if err != nil {
			return err
		}
		return insertRecord(tx, rm, rs.k, ns, P(&r), rs.s.now())
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// replace puts r in place of the record name and returns it as stored.
func (rs records[T, P]) replace(ctx context.Context, p lifecycle.Principal, ns, name, rule string, r T) (*T, error) {
	err := rs.s.update(ctx, func(tx kv.Txn) error {
		if _, err := rs.s.namespaceFor(tx, p, ns, rule); err != nil {
			return err
		}
		old, err := getRecord[T, P](tx, rs.k, ns, name)
		if err != nil {
			return err
		}
		rm, err := roomOf(tx, ns, "")
		if err != nil {
			return err
		}
		return replaceRecord(tx, rm, rs.k, ns, name, P(&r), P(old).created(), rs.s.now())
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// delete deletes the record name; a protected namespace refuses.
func (rs records[T, P]) delete(ctx context.Context, p lifecycle.Principal, ns, name, rule string) error {
	return rs.s.update(ctx, func(tx kv.Txn) error {
		n, err := rs.s.namespaceFor(tx, p, ns, rule)
		if err != nil {
			return err
		}
		key := meta.MetadefMemberKey(rs.k, ns, name)
		if _, err := tx.Get(key); errors.Is(err, kv.ErrNotFound) {
			return recordNotFound(rs.k, ns, name)
		} else if err != nil {
			return err
		}
		if n.Protected {
			return refuse(lifecycle.ErrForbidden, kindTexts[rs.k].protected, name)
		}
		return tx.Delete(key)
	})
}

// The records of each kind.
func (s *Service) objects() records[Object, *Object] {
	return records[Object, *Object]{s, meta.MetadefObject}
}
func (s *Service) properties() records[Property, *Property] {
	return records[Property, *Property]{s, meta.MetadefProperty}
}
func (s *Service) tags() records[Tag, *Tag] {
	return records[Tag, *Tag]{s, meta.MetadefTag}
}
func (s *Service) associations() records[Association, *Association] {
	return records[Association, *Association]{s, meta.MetadefAssociation}
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
	all, err := s.objects().list(ctx, p, ns, policy.GetMetadefObjects)
	if err != nil {
		return nil, err
	}
	return page(all, pg, meta.MetadefObject, ns)
}

func (s *Service) GetObject(ctx context.Context, p lifecycle.Principal, ns, name string) (*Object, error) {
	return s.objects().get(ctx, p, ns, name, policy.GetMetadefObject)
}

func (s *Service) CreateObject(ctx context.Context, p lifecycle.Principal, ns string, o Object) (*Object, error) {
	if err := checkObject(&o); err != nil {
		return nil, err
	}
	return s.objects().create(ctx, p, ns, policy.AddMetadefObject, o)
}

func (s *Service) UpdateObject(ctx context.Context, p lifecycle.Principal, ns, name string, o Object) (*Object, error) {
	if err := checkObject(&o); err != nil {
		return nil, err
	}
	return s.objects().replace(ctx, p, ns, name, policy.ModifyMetadefObject, o)
}

func (s *Service) DeleteObject(ctx context.Context, p lifecycle.Principal, ns, name string) error {
	return s.objects().delete(ctx, p, ns, name, policy.DeleteMetadefObject)
}

// Properties.

func (s *Service) ListProperties(ctx context.Context, p lifecycle.Principal, ns string) ([]Property, error) {
	return s.properties().list(ctx, p, ns, policy.GetMetadefProperties)
}

// GetProperty returns the property; with a resource type, name carries the
// prefix of the namespace's association with it, as Glance's
// ?resource_type= does.
func (s *Service) GetProperty(ctx context.Context, p lifecycle.Principal, ns, name, resourceType string) (*Property, error) {
	var out *Property
	err := s.view(ctx, func(tx kv.Txn) error {
		n, err := s.namespaceFor(tx, p, ns, policy.GetMetadefProperty)
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
	return s.properties().create(ctx, p, ns, policy.AddMetadefProperty, pr)
}

func (s *Service) UpdateProperty(ctx context.Context, p lifecycle.Principal, ns, name string, pr Property) (*Property, error) {
	if err := checkName("property name", pr.Name, maxNameLen); err != nil {
		return nil, err
	}
	return s.properties().replace(ctx, p, ns, name, policy.ModifyMetadefProperty, pr)
}

func (s *Service) DeleteProperty(ctx context.Context, p lifecycle.Principal, ns, name string) error {
	return s.properties().delete(ctx, p, ns, name, policy.RemoveMetadefProperty)
}

// Tags.

func (s *Service) ListTags(ctx context.Context, p lifecycle.Principal, ns string, pg Page) ([]Tag, error) {
	all, err := s.tags().list(ctx, p, ns, policy.GetMetadefTags)
	if err != nil {
		return nil, err
	}
	return page(all, pg, meta.MetadefTag, ns)
}

func (s *Service) GetTag(ctx context.Context, p lifecycle.Principal, ns, name string) (*Tag, error) {
	return s.tags().get(ctx, p, ns, name, policy.GetMetadefTag)
}

func (s *Service) CreateTag(ctx context.Context, p lifecycle.Principal, ns, name string) (*Tag, error) {
	if err := checkName("tag name", name, maxNameLen); err != nil {
		return nil, err
	}
	return s.tags().create(ctx, p, ns, policy.AddMetadefTag, Tag{Name: name})
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
		if _, err := s.namespaceFor(tx, p, ns, policy.AddMetadefTags); err != nil {
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
	return s.tags().replace(ctx, p, ns, name, policy.ModifyMetadefTag, Tag{Name: newName})
}

func (s *Service) DeleteTag(ctx context.Context, p lifecycle.Principal, ns, name string) error {
	return s.tags().delete(ctx, p, ns, name, policy.DeleteMetadefTag)
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
		return scanJSON(tx, meta.MetadefResourceTypeKey(""), func(rt ResourceType) { out = append(out, rt) })
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
		n, err := s.namespaceFor(tx, p, ns, policy.ListMetadefResourceTypes)
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
		if _, err := s.namespaceFor(tx, p, ns, policy.AddMetadefResourceTypeAssociation); err != nil {
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
	err := s.associations().delete(ctx, p, ns, resourceType, policy.RemoveMetadefResourceTypeAssociation)
	if errors.Is(err, lifecycle.ErrNotFound) && !errors.Is(err, errNamespaceNotFound) {
		return refuse(lifecycle.ErrNotFound, "Failed to find resource type %s to delete", resourceType)
	}
	return err
}
