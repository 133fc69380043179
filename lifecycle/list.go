package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/glimpse-project/glimpse/meta"
)

// Filter keeps the images whose property Key compares to Values by Op:
//
//	"eq", "neq"              the text of the property equals (or not) Values[0]
//	"in"                     the text equals one of Values
//	"gt", "gte", "lt", "lte" ordered comparison with Values[0] (numbers for
//	                         numeric keys, times for created_at/updated_at)
//
// Keys are base properties (name, status, size, ...) or custom ones; an
// image lacking the property never matches (except for "neq").
type Filter struct {
	Key    string
	Op     string
	Values []string
}

// SortKey orders a listing by one base property.
type SortKey struct {
	Key  string
	Desc bool
}

// SortKeys are the keys a listing may be sorted by (Glance's).
var SortKeys = []string{"name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at"}

// ListQuery selects and orders a page of images, as Glance's GET
// /v2/images does.
type ListQuery struct {
	// Visibility: "" shows what the caller sees by default (for non-admins
	// their own, public and shared-with-them images, not other projects'
	// community images); "all" shows everything visible; otherwise only
	// images of that visibility.
	Visibility string
	// MemberStatus selects the images shared with the caller by the
	// status of its membership: "" or "accepted" (Glance's default),
	// "pending", "rejected", or "all". Admins see every image whatever it
	// says, as in Glance.
	MemberStatus string
	// Hidden: nil or false excludes os_hidden images; true shows only them.
	Hidden *bool
	// Tags: images must carry all of them.
	Tags    []string
	Filters []Filter
	// Sort orders the result; created_at and id (descending unless the
	// single given key is ascending) are always appended as tie-breakers.
	// Empty: created_at descending.
	Sort []SortKey
	// Marker: the id of the last image of the previous page; it must be an
	// image the caller sees (else ErrInvalid).
	Marker string
	// Limit: the most images to return; 0 means no limit.
	Limit int
}

// List returns a page of the images p may see that match q, and whether
// the page is full (so a further page may exist). Killed images are listed
// as Glance lists them (a failed upload can be found and deleted).
// get_images must let p list at all; then each image is one p may see.
func (s *Service) List(ctx context.Context, p Principal, q ListQuery) ([]*meta.Image, bool, error) {
	v := s.auth.viewer(p)
	if v.listable != nil {
		return nil, false, v.listable
	}
	for _, f := range q.Filters {
		if err := checkFilter(f); err != nil {
			return nil, false, err
		}
	}
	sortKeys, err := completeSort(q.Sort)
	if err != nil {
		return nil, false, err
	}
	if q.MemberStatus != "" && q.MemberStatus != "all" && !slices.Contains(meta.MemberStatuses, q.MemberStatus) {
		return nil, false, fmt.Errorf("%w: invalid status: %s", ErrInvalid, q.MemberStatus)
	}
	l, err := s.listing(p, q.MemberStatus)
	if err != nil {
		return nil, false, err
	}
	var all []*meta.Image
	markerSeen := false
	var marker *meta.Image
	err = s.store.All(func(img *meta.Image) error {
		// The marker may be any image the caller sees, listed or not.
		if img.ID == q.Marker && (l.includes(img) || s.sees(p, img)) {
			markerSeen = true
			marker = img
		}
		if !l.includes(img) || !q.matches(p, l.v.creds.IsAdmin, img) {
			return nil
		}
		all = append(all, img)
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if q.Marker != "" && !markerSeen {
		return nil, false, fmt.Errorf("%w: marker %s could not be found", ErrInvalid, q.Marker)
	}
	less := func(a, b *meta.Image) bool {
		for _, k := range sortKeys {
			c := compareKey(a, b, k.Key)
			if c != 0 {
				return (c < 0) != k.Desc
			}
		}
		return false
	}
	sort.SliceStable(all, func(i, j int) bool { return less(all[i], all[j]) })
	if marker != nil {
		// Everything strictly after the marker's position in this order,
		// whether or not the marker itself still matches the filters.
		i := sort.Search(len(all), func(i int) bool { return less(marker, all[i]) })
		all = all[i:]
	}
	full := false
	if q.Limit > 0 && len(all) >= q.Limit {
		full = true
		all = all[:q.Limit]
	}
	return all, full, nil
}

func completeSort(keys []SortKey) ([]SortKey, error) {
	for _, k := range keys {
		if !slices.Contains(SortKeys, k.Key) {
			return nil, fmt.Errorf("%w: invalid sort key: %s", ErrInvalid, k.Key)
		}
	}
	desc := true
	if len(keys) == 1 {
		desc = keys[0].Desc
	}
	out := append([]SortKey(nil), keys...)
	for _, tie := range []string{"created_at", "id"} {
		found := false
		for _, k := range out {
			found = found || k.Key == tie
		}
		if !found {
			out = append(out, SortKey{Key: tie, Desc: desc})
		}
	}
	return out, nil
}

func (q *ListQuery) matches(p Principal, admin bool, img *meta.Image) bool {
	switch q.Visibility {
	case "all":
	case "":
		if !admin && img.Visibility == "community" && img.Owner != p.Project {
			return false
		}
	default:
		if img.Visibility != q.Visibility {
			return false
		}
	}
	hidden := q.Hidden != nil && *q.Hidden
	if img.OSHidden != hidden {
		return false
	}
	for _, t := range q.Tags {
		if !slices.Contains(img.Tags, t) {
			return false
		}
	}
	for _, f := range q.Filters {
		if !f.matches(img) {
			return false
		}
	}
	return true
}

var numericKeys = map[string]bool{"size": true, "virtual_size": true, "min_disk": true, "min_ram": true}

func checkFilter(f Filter) error {
	if len(f.Values) == 0 {
		return fmt.Errorf("%w: filter on %s has no value", ErrInvalid, f.Key)
	}
	switch f.Op {
	case "eq", "neq", "in":
		return nil
	case "gt", "gte", "lt", "lte":
		switch {
		case numericKeys[f.Key]:
			if _, err := strconv.ParseInt(f.Values[0], 10, 64); err != nil {
				return fmt.Errorf("%w: unable to filter on a range with a non-numeric value", ErrInvalid)
			}
		case f.Key == "created_at" || f.Key == "updated_at":
			if _, err := parseFilterTime(f.Values[0]); err != nil {
				return fmt.Errorf("%w: bad %s query filter format. Use ISO 8601 DateTime notation.", ErrInvalid, f.Key)
			}
		}
		return nil
	}
	return fmt.Errorf("%w: unable to filter by unknown operator %s.", ErrInvalid, f.Op)
}

func (f Filter) matches(img *meta.Image) bool {
	text, ok := Lookup(img, f.Key)
	switch f.Op {
	case "eq":
		return ok && f.equal(text, f.Values[0])
	case "neq":
		return !ok || !f.equal(text, f.Values[0])
	case "in":
		if !ok {
			return false
		}
		for _, v := range f.Values {
			if f.equal(text, v) {
				return true
			}
		}
		return false
	}
	if !ok {
		return false
	}
	c := 0
	switch {
	case numericKeys[f.Key]:
		a, _ := strconv.ParseInt(text, 10, 64)
		b, _ := strconv.ParseInt(f.Values[0], 10, 64)
		c = cmpInt(a, b)
	case f.Key == "created_at" || f.Key == "updated_at":
		a, _ := parseFilterTime(text)
		b, _ := parseFilterTime(f.Values[0])
		c = a.Compare(b)
	default:
		c = strings.Compare(text, f.Values[0])
	}
	switch f.Op {
	case "gt":
		return c > 0
	case "gte":
		return c >= 0
	case "lt":
		return c < 0
	}
	return c <= 0 // lte
}

// equal compares a property's text with a filter value: times as instants,
// everything else as text.
func (f Filter) equal(text, v string) bool {
	if f.Key == "created_at" || f.Key == "updated_at" {
		a, err1 := parseFilterTime(text)
		b, err2 := parseFilterTime(v)
		return err1 == nil && err2 == nil && a.Equal(b)
	}
	return text == v
}

// parseFilterTime reads the ISO 8601 forms clients send.
func parseFilterTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04:05.999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: bad time %s", ErrInvalid, s)
}

func compareKey(a, b *meta.Image, key string) int {
	switch key {
	case "name":
		return strings.Compare(a.Name, b.Name)
	case "status":
		return strings.Compare(string(a.Status), string(b.Status))
	case "container_format":
		return strings.Compare(a.ContainerFormat, b.ContainerFormat)
	case "disk_format":
		return strings.Compare(a.DiskFormat, b.DiskFormat)
	case "size":
		return cmpInt(sizeOf(a.Size), sizeOf(b.Size))
	case "id":
		return strings.Compare(a.ID, b.ID)
	case "created_at":
		return a.CreatedAt.Compare(b.CreatedAt)
	case "updated_at":
		return a.UpdatedAt.Compare(b.UpdatedAt)
	}
	return 0
}

func sizeOf(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
