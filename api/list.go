package api

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// Glance's paging defaults (limit_param_default, api_limit_max).
const (
	defaultLimit = 25
	maxLimit     = 1000
)

// operatorKeys are the filters that take Glance's "op:value" syntax.
var (
	inKeys   = []string{"name", "id", "status", "container_format", "disk_format"}
	timeKeys = []string{"created_at", "updated_at"}
	// notFilters are query parameters that are not property filters.
	notFilters = []string{"limit", "marker", "sort", "sort_key", "sort_dir", "visibility", "member_status", "os_hidden", "tag", "size_min", "size_max"}
)

func (s *Server) listImages(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	q, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	var imgs []*meta.Image
	full := false
	if q.Limit >= 0 {
		if imgs, full, err = s.svc.List(r.Context(), p, q); err != nil {
			return err
		}
	}
	views := make([]map[string]any, 0, len(imgs))
	for _, img := range imgs {
		views = append(views, s.imageView(img, p))
	}
	// first: the query without marker; next: plus the last id.
	params := r.URL.Query()
	params.Del("marker")
	first := "/v2/images"
	if enc := params.Encode(); enc != "" {
		first += "?" + enc
	}
	body := map[string]any{"images": views, "first": first, "schema": "/v2/schemas/images"}
	if full && len(imgs) > 0 {
		params.Set("marker", imgs[len(imgs)-1].ID)
		body["next"] = "/v2/images?" + params.Encode()
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func parseListQuery(v url.Values) (lifecycle.ListQuery, error) {
	q := lifecycle.ListQuery{Limit: defaultLimit, Marker: v.Get("marker")}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return q, errorf(http.StatusBadRequest, "limit param must be an integer")
		}
		if n < 0 {
			return q, errorf(http.StatusBadRequest, "limit param must be positive")
		}
		q.Limit = min(n, maxLimit)
		if n == 0 {
			q.Limit = -1 // an empty page, never a next link
		}
	}
	sort, err := parseSort(v)
	if err != nil {
		return q, err
	}
	q.Sort = sort
	if vis := v.Get("visibility"); vis != "" {
		if vis != "all" && !slices.Contains(lifecycle.Visibilities, vis) {
			return q, errorf(http.StatusBadRequest, "Invalid visibility value: %s", vis)
		}
		q.Visibility = vis
	}
	if ms := v.Get("member_status"); ms != "" {
		if !slices.Contains([]string{"pending", "accepted", "rejected", "all"}, ms) {
			return q, errorf(http.StatusBadRequest, "Invalid status: %s", ms)
		}
		q.MemberStatus = ms
	}
	if h := v.Get("os_hidden"); h != "" {
		b, err := strconv.ParseBool(strings.ToLower(h))
		if err != nil || (strings.ToLower(h) != "true" && strings.ToLower(h) != "false") {
			return q, errorf(http.StatusBadRequest, "Invalid value for os_hidden: %s (true or false)", h)
		}
		q.Hidden = &b
	}
	q.Tags = v["tag"]
	for _, k := range []string{"size_min", "size_max"} {
		if val := v.Get(k); val != "" {
			if _, err := strconv.ParseInt(val, 10, 64); err != nil {
				return q, errorf(http.StatusBadRequest, "Unable to filter on a range with a non-numeric value.")
			}
			op := "gte"
			if k == "size_max" {
				op = "lte"
			}
			q.Filters = append(q.Filters, lifecycle.Filter{Key: "size", Op: op, Values: []string{val}})
		}
	}
	if _, ok := v["changes-since"]; ok {
		return q, errorf(http.StatusBadRequest, `The "changes-since" filter is no longer available on v2.`)
	}
	for key, vals := range v {
		if slices.Contains(notFilters, key) {
			continue
		}
		if key == "protected" && vals[0] != "true" && vals[0] != "false" {
			return q, errorf(http.StatusBadRequest, "Invalid value for protected: %s (true or false)", vals[0])
		}
		f, err := parseFilter(key, vals[0])
		if err != nil {
			return q, err
		}
		q.Filters = append(q.Filters, f)
	}
	return q, nil
}

// parseFilter reads Glance's "[op:]value" syntax for the keys that have
// it; other keys compare for equality.
func parseFilter(key, val string) (lifecycle.Filter, error) {
	switch {
	case slices.Contains(inKeys, key):
		op, rest, ok := strings.Cut(val, ":")
		if !ok {
			return lifecycle.Filter{Key: key, Op: "eq", Values: []string{val}}, nil
		}
		switch op {
		case "eq":
			return lifecycle.Filter{Key: key, Op: "eq", Values: []string{rest}}, nil
		case "in":
			vals, err := splitQuoted(rest)
			if err != nil {
				return lifecycle.Filter{}, err
			}
			return lifecycle.Filter{Key: key, Op: "in", Values: vals}, nil
		}
		return lifecycle.Filter{}, errorf(http.StatusBadRequest, "Unable to filter by unknown operator '%s'.", op)
	case slices.Contains(timeKeys, key):
		op, rest := "eq", val
		if o, r, ok := strings.Cut(val, ":"); ok && slices.Contains([]string{"gt", "gte", "lt", "lte", "neq", "eq"}, o) {
			op, rest = o, r
		}
		f := lifecycle.Filter{Key: key, Op: op, Values: []string{rest}}
		if !validTime(rest) {
			return f, errorf(http.StatusBadRequest, `Bad "%s" query filter format. Use ISO 8601 DateTime notation.`, key)
		}
		return f, nil
	}
	return lifecycle.Filter{Key: key, Op: "eq", Values: []string{val}}, nil
}

func validTime(s string) bool {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04:05.999999", "2006-01-02"} {
		if _, err := time.Parse(layout, s); err == nil {
			return true
		}
	}
	return false
}

// splitQuoted splits "a,\"b,c\",d" at commas outside double quotes, with
// backslash escapes.
func splitQuoted(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	quoted, escaped := false, false
	for _, c := range s {
		switch {
		case escaped:
			cur.WriteRune(c)
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(c)
		}
	}
	if quoted || escaped {
		return nil, errorf(http.StatusBadRequest, "Invalid filter value %s. The quote is not closed.", s)
	}
	return append(out, cur.String()), nil
}

// parseSort reads either sort=key[:dir],... or repeated sort_key/sort_dir.
func parseSort(v url.Values) ([]lifecycle.SortKey, error) {
	keys, dirs := v["sort_key"], v["sort_dir"]
	if sort := v.Get("sort"); sort != "" {
		if len(keys) > 0 || len(dirs) > 0 {
			return nil, errorf(http.StatusBadRequest, "Old and new sorting syntax cannot be combined")
		}
		var out []lifecycle.SortKey
		for _, part := range strings.Split(sort, ",") {
			k, d, _ := strings.Cut(strings.TrimSpace(part), ":")
			if d == "" {
				d = "desc"
			}
			if d != "asc" && d != "desc" {
				return nil, errorf(http.StatusBadRequest, "Invalid sort direction: %s", d)
			}
			if !slices.Contains(lifecycle.SortKeys, k) {
				return nil, errorf(http.StatusBadRequest, "Invalid sort key: %s. It must be one of the following: %s.", k, strings.Join(lifecycle.SortKeys, ", "))
			}
			out = append(out, lifecycle.SortKey{Key: k, Desc: d == "desc"})
		}
		return out, nil
	}
	if len(keys) == 0 {
		keys = []string{"created_at"}
	}
	for _, d := range dirs {
		if d != "asc" && d != "desc" {
			return nil, errorf(http.StatusBadRequest, "Invalid sort direction: %s", d)
		}
	}
	if len(dirs) > 1 && len(dirs) != len(keys) {
		return nil, errorf(http.StatusBadRequest, "Number of sort dirs does not match the number of sort keys")
	}
	out := make([]lifecycle.SortKey, 0, len(keys))
	for i, k := range keys {
		if !slices.Contains(lifecycle.SortKeys, k) {
			return nil, errorf(http.StatusBadRequest, "Invalid sort key: %s. It must be one of the following: %s.", k, strings.Join(lifecycle.SortKeys, ", "))
		}
		desc := true
		switch {
		case len(dirs) == 1:
			desc = dirs[0] == "desc"
		case len(dirs) > 1:
			desc = dirs[i] == "desc"
		}
		out = append(out, lifecycle.SortKey{Key: k, Desc: desc})
	}
	return out, nil
}
