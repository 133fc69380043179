package lifecycle

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

// Glance's limits and vocabularies (glance/api/v2/images.py, glance.conf
// defaults).
const (
	MaxNameLength     = 255
	MaxKeyLength      = 255
	MaxValueLength    = 65535
	MaxProperties     = 128
	MaxTags           = 128
	MaxTagLength      = 255
	glimpsePrefix     = "glimpse."
	reservedKeyPrefix = "os_glance"
)

// DiskFormats and ContainerFormats are the values Glance accepts.
var (
	DiskFormats      = []string{"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"}
	ContainerFormats = []string{"ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"}
	Visibilities     = []string{"public", "private", "shared", "community"}
)

// readOnlyKeys are base properties no caller may set or remove.
var readOnlyKeys = map[string]bool{
	"id": true, "status": true, "size": true, "virtual_size": true, "checksum": true,
	"os_hash_algo": true, "os_hash_value": true, "created_at": true, "updated_at": true,
	"owner": true, "file": true, "schema": true, "self": true, "locations": true,
	"direct_url": true, "stores": true,
}

// reservedKeys are Glance's reserved attributes: no image carries them as
// properties, whoever asks and through whichever face (Glance refuses them
// at create and in a patch alike).
var reservedKeys = map[string]bool{"location": true, "deleted": true, "deleted_at": true}

// writableBaseKeys are the base properties a caller may change (but not
// remove).
var writableBaseKeys = map[string]bool{
	"name": true, "visibility": true, "protected": true, "os_hidden": true,
	"min_disk": true, "min_ram": true, "tags": true, "disk_format": true, "container_format": true,
}

// IsBaseKey reports whether key is one of Glance's base image properties.
func IsBaseKey(key string) bool { return readOnlyKeys[key] || writableBaseKeys[key] }

// Property is one property of an image as text, the way Glance shows it.
type Property struct {
	Key, Value string
}

// Properties lists every property of img that has a value, base and custom,
// as text (numbers in decimal, booleans true/false, times RFC 3339, tags
// comma-separated), plus glimpse's own facts under "glimpse.". Sorted by
// key.
func Properties(img *meta.Image) []Property {
	ps := make([]Property, 0, 24+len(img.Properties))
	add := func(k, v string) { ps = append(ps, Property{k, v}) }
	add("id", img.ID)
	add("name", img.Name)
	add("status", string(img.Status))
	add("visibility", img.Visibility)
	add("protected", strconv.FormatBool(img.Protected))
	add("os_hidden", strconv.FormatBool(img.OSHidden))
	add("owner", img.Owner)
	add("min_disk", strconv.FormatInt(img.MinDisk, 10))
	add("min_ram", strconv.FormatInt(img.MinRAM, 10))
	add("tags", strings.Join(img.Tags, ","))
	add("created_at", FormatTime(img.CreatedAt))
	add("updated_at", FormatTime(img.UpdatedAt))
	if img.DiskFormat != "" {
		add("disk_format", img.DiskFormat)
	}
	if img.ContainerFormat != "" {
		add("container_format", img.ContainerFormat)
	}
	if img.Size != nil {
		add("size", strconv.FormatInt(*img.Size, 10))
	}
	if img.VirtualSize != nil {
		add("virtual_size", strconv.FormatInt(*img.VirtualSize, 10))
	}
	if img.Checksum != "" {
		add("checksum", img.Checksum)
	}
	if img.OSHashAlgo != "" {
		add("os_hash_algo", img.OSHashAlgo)
		add("os_hash_value", img.OSHashValue)
	}
	if img.Error != "" {
		add(glimpsePrefix+"error", img.Error)
	}
	if img.DetectedFormat != "" {
		add(glimpsePrefix+"detected_format", img.DetectedFormat)
	}
	for k, v := range img.Properties {
		add(k, v)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Key < ps[j].Key })
	return ps
}

// Lookup returns the text of one property of img, as Properties shows it.
func Lookup(img *meta.Image, key string) (string, bool) {
	if v, ok := img.Properties[key]; ok && !IsBaseKey(key) {
		return v, true
	}
	for _, p := range Properties(img) {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// FormatTime renders t as Glance does: RFC 3339 in UTC, whole seconds.
func FormatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// ParseText turns the text form of a property (as Properties renders it) into
// the typed value an Op carries.
func ParseText(key, text string) (any, error) {
	switch key {
	case "protected", "os_hidden":
		b, err := strconv.ParseBool(text)
		if err != nil || (text != "true" && text != "false") {
			return nil, fmt.Errorf("%w: %s must be true or false, not %s", ErrInvalid, key, text)
		}
		return b, nil
	case "min_disk", "min_ram":
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s must be a whole number, not %s", ErrInvalid, key, text)
		}
		return n, nil
	case "tags":
		if text == "" {
			return []string{}, nil
		}
		return strings.Split(text, ","), nil
	}
	return text, nil
}

// Op is one change to an image, the JSON-patch operations Glance accepts on
// a top-level key: "replace", "add" or "remove". Value carries the JSON type
// (string, bool, a number as int64/float64/json.Number, []string or []any,
// or nil).
type Op struct {
	Op    string
	Key   string
	Value any
}

// apply changes img by op, enforcing Glance's rules for the key; may
// answers the rules that some values need (publicize_image,
// communitize_image).
func apply(img *meta.Image, op Op, may grants) error {
	key := op.Key
	switch {
	case reservedKeys[key]:
		return fmt.Errorf("%w: %s is reserved", ErrReadOnly, key)
	case readOnlyOrReserved(key):
		return fmt.Errorf("%w: %s", ErrReadOnly, key)
	case op.Op == "remove":
		if writableBaseKeys[key] {
			return fmt.Errorf("%w: %s cannot be removed", ErrReadOnly, key)
		}
		if _, ok := img.Properties[key]; !ok {
			return fmt.Errorf("%w: %s", ErrNoProperty, key)
		}
		delete(img.Properties, key)
		return nil
	case op.Op != "replace" && op.Op != "add":
		return fmt.Errorf("%w: invalid operation: `%s`", ErrInvalid, op.Op)
	}
	switch key {
	case "name":
		s, err := stringValue(key, op.Value, true)
		if err != nil {
			return err
		}
		if err := ValidName(s); err != nil {
			return err
		}
		img.Name = s
	case "visibility":
		s, err := stringValue(key, op.Value, false)
		if err != nil {
			return err
		}
		if !slices.Contains(Visibilities, s) {
			return fmt.Errorf("%w: visibility must be one of %s", ErrInvalid, strings.Join(Visibilities, ", "))
		}
		if rule := visibilityRule(s); rule != "" && !may(rule) {
			return Forbidden(rule)
		}
		img.Visibility = s
	case "protected", "os_hidden":
		b, ok := op.Value.(bool)
		if !ok {
			return fmt.Errorf("%w: %s must be true or false", ErrInvalid, key)
		}
		if key == "protected" {
			img.Protected = b
		} else {
			img.OSHidden = b
		}
	case "min_disk", "min_ram":
		n, err := intValue(key, op.Value)
		if err != nil {
			return err
		}
		if key == "min_disk" {
			img.MinDisk = n
		} else {
			img.MinRAM = n
		}
	case "tags":
		tags, err := tagsValue(op.Value)
		if err != nil {
			return err
		}
		img.Tags = tags
	case "disk_format", "container_format":
		s, err := stringValue(key, op.Value, true)
		if err != nil {
			return err
		}
		allowed := DiskFormats
		if key == "container_format" {
			allowed = ContainerFormats
		}
		if s != "" && !slices.Contains(allowed, s) {
			return fmt.Errorf("%w: %s must be one of %s", ErrInvalid, key, strings.Join(allowed, ", "))
		}
		if img.Status != meta.Queued {
			return fmt.Errorf("%w: %s can only be changed on a queued image", ErrForbidden, key)
		}
		if key == "disk_format" {
			img.DiskFormat = s
		} else {
			img.ContainerFormat = s
		}
	default:
		if err := ValidKey(key); err != nil {
			return err
		}
		s, err := stringValue(key, op.Value, false)
		if err != nil {
			return err
		}
		if len(s) > MaxValueLength || !utf8.ValidString(s) {
			return fmt.Errorf("%w: the value of %s must be valid UTF-8 of at most %d bytes", ErrInvalid, key, MaxValueLength)
		}
		if _, ok := img.Properties[key]; !ok && len(img.Properties) >= MaxProperties {
			return fmt.Errorf("%w: an image has at most %d properties", ErrTooLarge, MaxProperties)
		}
		if img.Properties == nil {
			img.Properties = map[string]string{}
		}
		img.Properties[key] = s
	}
	return nil
}

// visibilityRule is the rule that governs making an image public or
// community (Glance's _enforce_image_visibility), "" for the others.
func visibilityRule(visibility string) string {
	switch visibility {
	case "public":
		return policy.PublicizeImage
	case "community":
		return policy.CommunitizeImage
	}
	return ""
}

// ValidName checks an image name as Glance does: at most 255 characters.
func ValidName(name string) error {
	if utf8.RuneCountInString(name) > MaxNameLength || !utf8.ValidString(name) {
		return fmt.Errorf("%w: a name is valid UTF-8 of at most %d characters", ErrInvalid, MaxNameLength)
	}
	return nil
}

// ValidKey checks a custom property key.
func ValidKey(key string) error {
	if key == "" || len(key) > MaxKeyLength || !utf8.ValidString(key) {
		return fmt.Errorf("%w: a property key is 1 to %d bytes of UTF-8", ErrInvalid, MaxKeyLength)
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: a property key has no control characters", ErrInvalid)
		}
	}
	return nil
}

func stringValue(key string, v any, nullable bool) (string, error) {
	switch s := v.(type) {
	case string:
		return s, nil
	case nil:
		if nullable {
			return "", nil
		}
	}
	return "", fmt.Errorf("%w: %s must be a string", ErrInvalid, key)
}

func intValue(key string, v any) (int64, error) {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case int:
		n = int64(x)
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return 0, fmt.Errorf("%w: %s must be a whole number", ErrInvalid, key)
		}
		n = int64(x)
	case interface{ Int64() (int64, error) }: // json.Number
		var err error
		if n, err = x.Int64(); err != nil {
			return 0, fmt.Errorf("%w: %s must be a whole number", ErrInvalid, key)
		}
	default:
		return 0, fmt.Errorf("%w: %s must be a whole number", ErrInvalid, key)
	}
	if n < 0 || n > math.MaxInt32 {
		return 0, fmt.Errorf("%w: %s must be between 0 and %d", ErrInvalid, key, math.MaxInt32)
	}
	return n, nil
}

func tagsValue(v any) ([]string, error) {
	var tags []string
	switch x := v.(type) {
	case []string:
		tags = x
	case []any:
		for _, t := range x {
			s, ok := t.(string)
			if !ok {
				return nil, fmt.Errorf("%w: tags must be strings", ErrInvalid)
			}
			tags = append(tags, s)
		}
	default:
		return nil, fmt.Errorf("%w: tags must be a list of strings", ErrInvalid)
	}
	seen := map[string]bool{}
	out := []string{}
	for _, t := range tags {
		if t == "" || len(t) > MaxTagLength || !utf8.ValidString(t) || strings.Contains(t, ",") {
			return nil, fmt.Errorf("%w: a tag is 1 to %d bytes of UTF-8 without commas", ErrInvalid, MaxTagLength)
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) > MaxTags {
		return nil, fmt.Errorf("%w: an image has at most %d tags", ErrTooLarge, MaxTags)
	}
	return out, nil
}
