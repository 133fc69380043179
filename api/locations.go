package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// HTTP locations through REST: the JSON-patch forms glanceclient sends
// (location-add: add /locations/-; location-delete: remove /locations/N;
// location-update: replace /locations) and Glance 2024.1's
// POST/GET /v2/images/{id}/locations.

// addLocationsView shows img's locations and direct_url to those who may
// see them (get_image_location: admins and the owner by default), as a
// Glance deployment with show_multiple_locations and show_image_direct_url
// would; others see neither key, as with Glance's defaults.
func (s *Server) addLocationsView(v map[string]any, p lifecycle.Principal, img *meta.Image) {
	if !s.svc.Authorizer().CanSeeLocations(p, img) {
		return
	}
	v["locations"] = locationsList(img)
	if len(img.Locations) > 0 {
		v["direct_url"] = img.Locations[0].URL
	}
}

func locationsList(img *meta.Image) []map[string]any {
	locs := make([]map[string]any, 0, len(img.Locations))
	for _, l := range img.Locations {
		md := l.Metadata
		if md == nil {
			md = map[string]any{}
		}
		locs = append(locs, map[string]any{"url": l.URL, "metadata": md})
	}
	return locs
}

// locationChange is one JSON-patch change on /locations.
type locationChange struct {
	op    string
	index int // -1 for "-"; for replace, unused
	value any
}

// decodeLocationChange recognises a change whose path is /locations or
// /locations/N or /locations/-. ok is false for any other path.
func decodeLocationChange(c map[string]any, v20 bool) (lc locationChange, ok bool, err error) {
	var op, path string
	if v20 {
		for _, o := range []string{"add", "replace", "remove"} {
			if v, isStr := c[o].(string); isStr {
				op, path = o, v
			}
		}
	} else {
		op, _ = c["op"].(string)
		path, _ = c["path"].(string)
	}
	rest, found := strings.CutPrefix(path, "/locations")
	if !found || (rest != "" && rest[0] != '/') || op == "" {
		return locationChange{}, false, nil
	}
	bad := errorf(http.StatusBadRequest, "Invalid JSON pointer for this resource: '%s'", path)
	lc = locationChange{op: op, index: -1}
	switch op {
	case "replace":
		if rest != "" {
			return lc, true, bad
		}
	case "add", "remove":
		seg, isIndex := strings.CutPrefix(rest, "/")
		if !isIndex {
			return lc, true, bad
		}
		if seg != "-" || op == "remove" {
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || strconv.Itoa(n) != seg {
				return lc, true, bad
			}
			lc.index = n
		}
	default:
		return lc, true, errorf(http.StatusBadRequest, "Invalid operation: `%s`. It must be one of the following: add, remove, replace.", op)
	}
	value, hasValue := c["value"]
	if op != "remove" && !hasValue {
		return lc, true, errorf(http.StatusBadRequest, "Unable to find '%s' in JSON Schema change", "value")
	}
	lc.value = value
	return lc, true, nil
}

// decodeLocation reads one location object {"url", "metadata",
// "validation_data"?} as the image schema describes it.
func decodeLocation(v any, needMetadata bool) (meta.Location, *lifecycle.ValidationData, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return meta.Location{}, nil, invalidType("location", "'object'")
	}
	var loc meta.Location
	var vd *lifecycle.ValidationData
	for k, x := range obj {
		switch k {
		case "url":
			u, ok := x.(string)
			if !ok {
				return loc, nil, invalidType("url", "'string'")
			}
			loc.URL = u
		case "metadata":
			md, ok := x.(map[string]any)
			if !ok {
				return loc, nil, invalidType("metadata", "'object'")
			}
			loc.Metadata = md
		case "validation_data":
			var err error
			if vd, err = decodeValidationData(x); err != nil {
				return loc, nil, err
			}
		default:
			return loc, nil, errorf(http.StatusBadRequest, "Provided object does not match schema 'image': Additional properties are not allowed ('%s' was unexpected)", k)
		}
	}
	if loc.URL == "" {
		return loc, nil, errorf(http.StatusBadRequest, "Provided object does not match schema 'image': 'url' is a required property")
	}
	if needMetadata && loc.Metadata == nil {
		return loc, nil, errorf(http.StatusBadRequest, "Provided object does not match schema 'image': 'metadata' is a required property")
	}
	return loc, vd, nil
}

func decodeValidationData(x any) (*lifecycle.ValidationData, error) {
	obj, ok := x.(map[string]any)
	if !ok {
		return nil, invalidType("validation_data", "'object'")
	}
	vd := &lifecycle.ValidationData{}
	for k, v := range obj {
		s, ok := v.(string)
		if !ok {
			return nil, invalidType(k, "'string'")
		}
		switch k {
		case "checksum":
			vd.Checksum = s
		case "os_hash_algo":
			vd.OSHashAlgo = s
		case "os_hash_value":
			vd.OSHashValue = s
		default:
			return nil, errorf(http.StatusBadRequest, "Provided object does not match schema 'image': Additional properties are not allowed ('%s' was unexpected)", k)
		}
	}
	return vd, nil
}

// applyLocationChange runs one /locations change through the lifecycle.
func (s *Server) applyLocationChange(r *http.Request, p lifecycle.Principal, id string, lc locationChange) (*meta.Image, error) {
	switch lc.op {
	case "add":
		loc, vd, err := decodeLocation(lc.value, true)
		if err != nil {
			return nil, err
		}
		if lc.index > 0 {
			// glimpse keeps one location per image: only the first
			// position exists.
			return nil, errorf(http.StatusBadRequest, "Invalid JSON pointer for this resource: '/locations/%d'", lc.index)
		}
		return s.svc.AddLocation(r.Context(), p, id, loc, vd, lifecycle.LocationByPatch)
	case "remove":
		return s.svc.RemoveLocation(r.Context(), p, id, lc.index)
	default: // replace
		list, ok := lc.value.([]any)
		if !ok {
			return nil, invalidType("locations", "'array'")
		}
		locs := make([]meta.Location, 0, len(list))
		for _, x := range list {
			loc, _, err := decodeLocation(x, true)
			if err != nil {
				return nil, err
			}
			locs = append(locs, loc)
		}
		return s.svc.ReplaceLocations(r.Context(), p, id, locs)
	}
}

// addLocation is POST /v2/images/{id}/locations (Glance 2024.1, API 2.17):
// {"url": ..., "validation_data": {...}} on a queued image; 202.
func (s *Server) addLocation(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	var body map[string]any
	if err := readJSON(r, &body); err != nil {
		return err
	}
	loc, vd, err := decodeLocation(body, false)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if _, err := s.svc.AddLocation(r.Context(), p, id, loc, vd, lifecycle.LocationByPost); err != nil {
		return notFound(id, err)
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// getLocations is GET /v2/images/{id}/locations: [{"url", "metadata"}].
func (s *Server) getLocations(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	id := r.PathValue("id")
	locs, err := s.svc.Locations(r.Context(), p, id)
	if err != nil {
		return notFound(id, err)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(locationsList(&meta.Image{Locations: locs}))
}
