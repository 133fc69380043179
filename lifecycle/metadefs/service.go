package metadefs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
	"github.com/glimpse-project/glimpse/meta/kv"
)

// Service is the metadefs catalogue on a registry's key-value store. It is
// safe for concurrent use; every call is one transaction.
type Service struct {
	db   kv.KV
	auth *lifecycle.Authorizer // decides every request by Glance's metadef rules
	now  func() time.Time
}

// New returns the catalogue kept in db (the registry's store), its
// requests decided by auth (nil: Glance's default policy).
func New(db kv.KV, auth *lifecycle.Authorizer) *Service {
	if auth == nil {
		auth = lifecycle.NewAuthorizer(nil)
	}
	return &Service{db: db, auth: auth, now: func() time.Time { return time.Now().UTC().Truncate(time.Second) }}
}

// Limits of Glance's schemas.
const (
	maxNameLen        = 80
	maxDescriptionLen = 500
	maxOwnerLen       = 255
)

func checkName(what, name string, max int) error {
	switch {
	case name == "":
		return refuse(lifecycle.ErrInvalid, "%s may not be empty", what)
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		return refuse(lifecycle.ErrInvalid, "%s must be valid UTF-8 without NUL", what)
	case utf8.RuneCountInString(name) > max:
		return refuse(lifecycle.ErrInvalid, "%s is longer than %d characters", what, max)
	}
	return nil
}

func (n *Namespace) check() error {
	if err := checkName("namespace", n.Namespace, maxNameLen); err != nil {
		return err
	}
	if utf8.RuneCountInString(n.DisplayName) > maxNameLen {
		return refuse(lifecycle.ErrInvalid, "display_name is longer than %d characters", maxNameLen)
	}
	if utf8.RuneCountInString(n.Description) > maxDescriptionLen {
		return refuse(lifecycle.ErrInvalid, "description is longer than %d characters", maxDescriptionLen)
	}
	if utf8.RuneCountInString(n.Owner) > maxOwnerLen {
		return refuse(lifecycle.ErrInvalid, "owner is longer than %d characters", maxOwnerLen)
	}
	if n.Visibility != "public" && n.Visibility != "private" {
		return refuse(lifecycle.ErrInvalid, "Invalid visibility value: %s", n.Visibility)
	}
	return nil
}

func getJSON(tx kv.Txn, key []byte, v any) error {
	raw, err := tx.Get(key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("metadefs record %q: %w", key, err)
	}
	return nil
}

func putJSON(tx kv.Txn, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Set(key, raw)
}

// scanJSON decodes each record under prefix, in key order, and hands it
// to fn.
func scanJSON[T any](tx kv.Txn, prefix []byte, fn func(T)) error {
	return tx.Scan(prefix, func(key, value []byte) error {
		var v T
		if err := json.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("metadefs record %q: %w", key, err)
		}
		fn(v)
		return nil
	})
}

// absent is nil when key holds nothing, and dup when it holds a record.
func absent(tx kv.Txn, key []byte, dup error) error {
	_, err := tx.Get(key)
	switch {
	case err == nil:
		return dup
	case errors.Is(err, kv.ErrNotFound):
		return nil
	}
	return err
}

// readNamespace returns the namespace if it exists, whoever may see it.
func readNamespace(tx kv.Txn, name string) (*Namespace, error) {
	var ns Namespace
	err := getJSON(tx, meta.MetadefNamespaceKey(name), &ns)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, namespaceNotFound(name)
	}
	if err != nil {
		return nil, err
	}
	return &ns, nil
}

// visibleNamespace returns the namespace when get_metadef_namespace lets
// p see it; one it may not see is not found, as in Glance.
func (s *Service) visibleNamespace(tx kv.Txn, p lifecycle.Principal, name string) (*Namespace, error) {
	ns, err := readNamespace(tx, name)
	if err != nil {
		return nil, err
	}
	if !s.allowed(p, policy.GetMetadefNamespace, ns) {
		return nil, namespaceNotFound(name)
	}
	return ns, nil
}

// ListOptions select and order a namespace listing, as Glance's query
// parameters do.
type ListOptions struct {
	Marker  string // the namespace after which the page starts
	Limit   int    // 0: no limit
	SortKey string // a namespace field; created_at by default
	SortDir string // asc or desc (default)
	// Visibility keeps only public or private namespaces ("": both).
	Visibility string
	// ResourceTypes keeps namespaces associated with any of them.
	ResourceTypes []string
}

// SortKeys are the namespace fields a listing can be sorted by.
var SortKeys = []string{"created_at", "updated_at", "namespace", "display_name", "description", "visibility", "protected", "owner"}

func sortValue(ns *Namespace, key string) string {
	switch key {
	case "updated_at":
		return ns.UpdatedAt.Format(time.RFC3339Nano)
	case "namespace":
		return ns.Namespace
	case "display_name":
		return ns.DisplayName
	case "description":
		return ns.Description
	case "visibility":
		return ns.Visibility
	case "protected":
		if ns.Protected {
			return "1"
		}
		return "0"
	case "owner":
		return ns.Owner
	}
	return ns.CreatedAt.Format(time.RFC3339Nano)
}

// ListNamespaces returns the namespaces p may see, each with its resource
// type associations.
func (s *Service) ListNamespaces(ctx context.Context, p lifecycle.Principal, o ListOptions) ([]Detail, error) {
	if err := s.authorize(p, policy.GetMetadefNamespaces, nil); err != nil {
		return nil, err
	}
	if o.SortKey == "" {
		o.SortKey = "created_at"
	}
	if !slices.Contains(SortKeys, o.SortKey) {
		return nil, refuse(lifecycle.ErrInvalid, "Invalid sort key: %s. It must be one of the following: %s.", o.SortKey, strings.Join(SortKeys, ", "))
	}
	if o.SortDir == "" {
		o.SortDir = "desc"
	}
	if o.SortDir != "asc" && o.SortDir != "desc" {
		return nil, refuse(lifecycle.ErrInvalid, "Invalid sort direction: %s", o.SortDir)
	}
	if o.Visibility != "" && o.Visibility != "public" && o.Visibility != "private" {
		return nil, refuse(lifecycle.ErrInvalid, "Invalid visibility value: %s", o.Visibility)
	}
	var out []Detail
	err := s.view(ctx, func(tx kv.Txn) error {
		out = nil
		var all []*Namespace
		err := scanJSON(tx, meta.MetadefNamespaceKey(""), func(ns Namespace) {
			if s.allowed(p, policy.GetMetadefNamespace, &ns) && (o.Visibility == "" || ns.Visibility == o.Visibility) {
				all = append(all, &ns)
			}
		})
		if err != nil {
			return err
		}
		// Glance sorts by the key, then created_at, then id (creation).
		slices.SortStableFunc(all, func(a, b *Namespace) int {
			c := strings.Compare(sortValue(a, o.SortKey), sortValue(b, o.SortKey))
			if c == 0 {
				c = a.CreatedAt.Compare(b.CreatedAt)
			}
			if c == 0 {
				c = strings.Compare(a.Namespace, b.Namespace)
			}
			if o.SortDir == "desc" {
				c = -c
			}
			return c
		})
		start := 0
		if o.Marker != "" {
			i := slices.IndexFunc(all, func(ns *Namespace) bool { return ns.Namespace == o.Marker })
			if i < 0 {
				return namespaceNotFound(o.Marker)
			}
			start = i + 1
		}
		for _, ns := range all[start:] {
			if o.Limit > 0 && len(out) == o.Limit {
				break
			}
			assocs, err := listRecords[Association](tx, meta.MetadefAssociation, ns.Namespace)
			if err != nil {
				return err
			}
			if len(o.ResourceTypes) > 0 && !slices.ContainsFunc(assocs, func(a Association) bool { return slices.Contains(o.ResourceTypes, a.Name) }) {
				continue
			}
			if !s.allowed(p, policy.ListMetadefResourceTypes, ns) {
				assocs = nil
			}
			out = append(out, Detail{Namespace: *ns, Contents: Contents{Associations: assocs}})
		}
		return nil
	})
	return out, err
}

// CreateNamespace creates a namespace with its contents, all at once: a
// duplicate anywhere leaves nothing behind. Owner defaults to p's project,
// visibility to private.
func (s *Service) CreateNamespace(ctx context.Context, p lifecycle.Principal, d Detail) (*Detail, error) {
	if err := s.authorize(p, policy.AddMetadefNamespace, nil); err != nil {
		return nil, err
	}
	if len(d.Associations) > 0 {
		if err := s.authorize(p, policy.AddMetadefResourceTypeAssociation, &d.Namespace); err != nil {
			return nil, err
		}
	}
	if len(d.Objects) > 0 {
		if err := s.authorize(p, policy.AddMetadefObject, &d.Namespace); err != nil {
			return nil, err
		}
	}
	if len(d.Properties) > 0 {
		if err := s.authorize(p, policy.AddMetadefProperty, &d.Namespace); err != nil {
			return nil, err
		}
	}
	if len(d.Tags) > 0 {
		if err := s.authorize(p, policy.AddMetadefTag, &d.Namespace); err != nil {
			return nil, err
		}
	}
	if d.Owner == "" {
		d.Owner = p.Project
	}
	if d.Visibility == "" {
		d.Visibility = "private"
	}
	if err := d.Namespace.check(); err != nil {
		return nil, err
	}
	if err := checkContents(&d.Contents); err != nil {
		return nil, err
	}
	var out *Detail
	err := s.update(ctx, func(tx kv.Txn) error {
		c, err := s.insertNamespace(tx, d, false)
		out = c
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func checkContents(c *Contents) error {
	for i := range c.Objects {
		if err := checkObject(&c.Objects[i]); err != nil {
			return err
		}
	}
	for i := range c.Properties {
		if err := checkName("property name", c.Properties[i].Name, maxNameLen); err != nil {
			return err
		}
	}
	for i := range c.Tags {
		if err := checkName("tag name", c.Tags[i].Name, maxNameLen); err != nil {
			return err
		}
	}
	for i := range c.Associations {
		if err := checkName("resource type name", c.Associations[i].Name, maxNameLen); err != nil {
			return err
		}
	}
	return nil
}

func checkObject(o *Object) error {
	if err := checkName("object name", o.Name, maxNameLen); err != nil {
		return err
	}
	for name := range o.Properties {
		if err := checkName("property name", name, maxNameLen); err != nil {
			return err
		}
	}
	return nil
}

// insertNamespace writes d and its contents. Loaded definitions (seeded)
// create protected resource types, as glance-manage does.
func (s *Service) insertNamespace(tx kv.Txn, d Detail, seeded bool) (*Detail, error) {
	now := s.now()
	key := meta.MetadefNamespaceKey(d.Namespace.Namespace)
	if err := absent(tx, key, refuse(ErrDuplicate, "The metadata definition namespace=%s already exists.", d.Namespace.Namespace)); err != nil {
		return nil, err
	}
	ns := d.Namespace
	ns.CreatedAt, ns.UpdatedAt = now, now
	rm := &room{}
	if err := rm.put(tx, ns.Namespace, key, &ns, 0); err != nil {
		return nil, err
	}
	for _, a := range d.Associations {
		if err := ensureResourceType(tx, a.Name, seeded, now); err != nil {
			return nil, err
		}
	}
	out := &Detail{Namespace: ns}
	var err error
	if out.Associations, err = insertAll(tx, rm, meta.MetadefAssociation, ns.Namespace, d.Associations, now); err != nil {
		return nil, err
	}
	if out.Objects, err = insertAll(tx, rm, meta.MetadefObject, ns.Namespace, d.Objects, now); err != nil {
		return nil, err
	}
	if out.Properties, err = insertAll(tx, rm, meta.MetadefProperty, ns.Namespace, d.Properties, now); err != nil {
		return nil, err
	}
	if out.Tags, err = insertAll(tx, rm, meta.MetadefTag, ns.Namespace, d.Tags, now); err != nil {
		return nil, err
	}
	return out, nil
}

// insertAll inserts the records of kind k and returns them as stored.
func insertAll[T any, P recordPtr[T]](tx kv.Txn, rm *room, k meta.MetadefKind, ns string, list []T, now time.Time) ([]T, error) {
	var out []T
	for _, v := range list {
		if err := insertRecord(tx, rm, k, ns, P(&v), now); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// GetNamespace returns the namespace with its contents.
func (s *Service) GetNamespace(ctx context.Context, p lifecycle.Principal, name string) (*Detail, error) {
	var out *Detail
	err := s.view(ctx, func(tx kv.Txn) error {
		ns, err := s.visibleNamespace(tx, p, name)
		if err != nil {
			return err
		}
		d := &Detail{Namespace: *ns}
		if s.allowed(p, policy.ListMetadefResourceTypes, ns) {
			if d.Associations, err = listRecords[Association](tx, meta.MetadefAssociation, name); err != nil {
				return err
			}
		}
		if s.allowed(p, policy.GetMetadefObjects, ns) {
			if d.Objects, err = listRecords[Object](tx, meta.MetadefObject, name); err != nil {
				return err
			}
		}
		if s.allowed(p, policy.GetMetadefProperties, ns) {
			if d.Properties, err = listRecords[Property](tx, meta.MetadefProperty, name); err != nil {
				return err
			}
		}
		if s.allowed(p, policy.GetMetadefTags, ns) {
			if d.Tags, err = listRecords[Tag](tx, meta.MetadefTag, name); err != nil {
				return err
			}
		}
		out = d
		return nil
	})
	return out, err
}

// UpdateNamespace replaces the namespace's own fields with u's, as
// Glance's PUT does: visibility, protected and owner left out fall back to
// private, false and p's project. A new name moves the contents along.
func (s *Service) UpdateNamespace(ctx context.Context, p lifecycle.Principal, name string, u Namespace) (*Namespace, error) {
	var out *Namespace
	err := s.update(ctx, func(tx kv.Txn) error {
		ns, err := s.visibleNamespace(tx, p, name)
		if err != nil {
			return err
		}
		if err := s.authorize(p, policy.ModifyMetadefNamespace, ns); err != nil {
			return err
		}
		if u.Visibility == "" {
			u.Visibility = "private"
		}
		if u.Owner == "" {
			u.Owner = p.Project
		}
		if err := u.check(); err != nil {
			return err
		}
		u.CreatedAt, u.UpdatedAt = ns.CreatedAt, s.now()
		if u.Namespace != name {
			if err := absent(tx, meta.MetadefNamespaceKey(u.Namespace), refuse(ErrDuplicate, "Invalid update. It would result in a duplicate metadata definition namespace with the same name of %s", u.Namespace)); err != nil {
				return err
			}
			if err := moveContents(tx, name, u.Namespace); err != nil {
				return err
			}
			if err := tx.Delete(meta.MetadefNamespaceKey(name)); err != nil {
				return err
			}
		}
		out = &u
		return putJSON(tx, meta.MetadefNamespaceKey(u.Namespace), &u)
	})
	return out, err
}

// namespaceKinds are the kinds of record a namespace holds.
var namespaceKinds = []meta.MetadefKind{meta.MetadefObject, meta.MetadefProperty, meta.MetadefTag, meta.MetadefAssociation}

func moveContents(tx kv.Txn, from, to string) error {
	for _, k := range namespaceKinds {
		type kvPair struct {
			name  string
			value []byte
		}
		var recs []kvPair
		prefix := meta.MetadefMemberKey(k, from, "")
		err := tx.Scan(prefix, func(key, value []byte) error {
			recs = append(recs, kvPair{string(key[len(prefix):]), slices.Clone(value)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := tx.Delete(meta.MetadefMemberKey(k, from, r.name)); err != nil {
				return err
			}
			if err := tx.Set(meta.MetadefMemberKey(k, to, r.name), r.value); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteNamespace deletes the namespace and everything in it; a protected
// one is refused.
func (s *Service) DeleteNamespace(ctx context.Context, p lifecycle.Principal, name string) error {
	return s.update(ctx, func(tx kv.Txn) error {
		if err := s.deletable(tx, p, name, policy.DeleteMetadefNamespace); err != nil {
			return err
		}
		for _, k := range namespaceKinds {
			if err := deleteAll(tx, k, name); err != nil {
				return err
			}
		}
		return tx.Delete(meta.MetadefNamespaceKey(name))
	})
}

// Kind is a kind of record a namespace holds.
type Kind = meta.MetadefKind

// The kinds DeleteContents empties.
const (
	Objects    = meta.MetadefObject
	Properties = meta.MetadefProperty
	Tags       = meta.MetadefTag
)

// DeleteContents deletes every object, property or tag of the namespace
// (DELETE .../objects, .../properties, .../tags), as Glance: it needs the
// right to delete the namespace, which must not be protected.
func (s *Service) DeleteContents(ctx context.Context, p lifecycle.Principal, name string, k meta.MetadefKind) error {
	rules := []string{policy.DeleteMetadefNamespace}
	if k == meta.MetadefTag {
		rules = append(rules, policy.DeleteMetadefTags)
	}
	return s.update(ctx, func(tx kv.Txn) error {
		if err := s.deletable(tx, p, name, rules...); err != nil {
			return err
		}
		return deleteAll(tx, k, name)
	})
}

// deletable allows deleting the namespace, or emptying it: it must be
// visible, every rule must allow it, and it must not be protected.
func (s *Service) deletable(tx kv.Txn, p lifecycle.Principal, name string, rules ...string) error {
	ns, err := s.visibleNamespace(tx, p, name)
	if err != nil {
		return err
	}
	for _, rule := range rules {
		if err := s.authorize(p, rule, ns); err != nil {
			return err
		}
	}
	if ns.Protected {
		return refuse(lifecycle.ErrForbidden, "Metadata definition namespace %s is protected and cannot be deleted.", name)
	}
	return nil
}

func deleteAll(tx kv.Txn, k meta.MetadefKind, ns string) error {
	var keys [][]byte
	err := tx.Scan(meta.MetadefMemberKey(k, ns, ""), func(key, _ []byte) error {
		keys = append(keys, slices.Clone(key))
		return nil
	})
	if err != nil {
		return err
	}
	for _, key := range keys {
		if err := tx.Delete(key); err != nil {
			return err
		}
	}
	return nil
}

// view and update run fn in a registry transaction bound by the caller's
// ctx, so that a request whose client went away, or a daemon shutting
// down, stops waiting on the registry (an etcd one retries under it).
func (s *Service) view(ctx context.Context, fn func(kv.Txn) error) error {
	return s.db.View(ctx, fn)
}

func (s *Service) update(ctx context.Context, fn func(kv.Txn) error) error {
	_, err := s.db.Update(ctx, fn)
	if errors.Is(err, kv.ErrTooLarge) {
		return refuse(lifecycle.ErrTooLarge, "The change is larger than the registry takes in one transaction.")
	}
	return err
}
