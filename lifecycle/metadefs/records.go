// Package metadefs is Glance's metadata definitions catalogue: namespaces
// and the objects, properties, tags and resource-type associations they
// hold, and the resource types. It keeps them in the registry's key-value
// store (key kinds in meta/keys.go) and decides who may see and change
// them as Glance 25's default policy does (policy.go).
package metadefs

import (
	"encoding/json"
	"time"
)

// Namespace is a namespace's own fields, as stored.
type Namespace struct {
	Namespace   string    `json:"namespace"`
	DisplayName string    `json:"display_name,omitempty"`
	Description string    `json:"description,omitempty"`
	Visibility  string    `json:"visibility"`
	Protected   bool      `json:"protected"`
	Owner       string    `json:"owner,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Contents is what a namespace holds, as shown with it.
type Contents struct {
	Associations []Association
	Properties   []Property // sorted by name
	Objects      []Object
	Tags         []Tag
}

// Detail is a namespace with its contents.
type Detail struct {
	Namespace
	Contents
}

// ItemType is the type of an array property's items.
type ItemType struct {
	Type string   `json:"type,omitempty"`
	Enum []string `json:"enum,omitempty"`
}

// Property is a property definition (Glance's PropertyType). Absent
// fields stay absent in answers, as wsme leaves unset attributes out.
type Property struct {
	Name            string          `json:"name,omitempty"`
	Type            string          `json:"type,omitempty"`
	Title           string          `json:"title,omitempty"`
	Description     *string         `json:"description,omitempty"`
	Operators       []string        `json:"operators,omitempty"`
	Default         json.RawMessage `json:"default,omitempty"`
	Readonly        *bool           `json:"readonly,omitempty"`
	Minimum         *float64        `json:"minimum,omitempty"`
	Maximum         *float64        `json:"maximum,omitempty"`
	Enum            []string        `json:"enum,omitempty"`
	Pattern         *string         `json:"pattern,omitempty"`
	MinLength       *int64          `json:"minLength,omitempty"`
	MaxLength       *int64          `json:"maxLength,omitempty"`
	Confidential    *bool           `json:"confidential,omitempty"`
	Items           *ItemType       `json:"items,omitempty"`
	UniqueItems     *bool           `json:"uniqueItems,omitempty"`
	MinItems        *int64          `json:"minItems,omitempty"`
	MaxItems        *int64          `json:"maxItems,omitempty"`
	AdditionalItems *bool           `json:"additionalItems,omitempty"`
	// Glance shows no times for properties, and orders them by name.
	CreatedAt time.Time `json:"-"`
	UpdatedAt time.Time `json:"-"`
}

// Object is an object definition: a named group of properties.
type Object struct {
	Name        string              `json:"name"`
	Description string              `json:"description,omitempty"`
	Required    []string            `json:"required,omitempty"`
	Properties  map[string]Property `json:"properties,omitempty"`
	CreatedAt   time.Time           `json:"created_at"`
	UpdatedAt   time.Time           `json:"updated_at"`
}

// Tag is a tag definition.
type Tag struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ResourceType is a kind of resource namespaces apply to
// (OS::Glance::Image, OS::Nova::Flavor, ...).
type ResourceType struct {
	Name string `json:"name"`
	// Protected: loaded from definition files (seeded); associations
	// made through the API create unprotected ones.
	Protected bool      `json:"protected"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Association ties a namespace to a resource type, with the prefix its
// properties take on resources of that type.
type Association struct {
	Name             string    `json:"name"`
	Prefix           string    `json:"prefix,omitempty"`
	PropertiesTarget string    `json:"properties_target,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// record is what every record a namespace holds has: a name unique within
// the namespace and its kind, and times.
type record interface {
	recordName() string
	stamp(created, updated time.Time)
	created() time.Time
	updated() time.Time
}

func (m *Property) recordName() string    { return m.Name }
func (m *Object) recordName() string      { return m.Name }
func (m *Tag) recordName() string         { return m.Name }
func (m *Association) recordName() string { return m.Name }

func (m *Property) stamp(c, u time.Time)    { m.CreatedAt, m.UpdatedAt = c, u }
func (m *Object) stamp(c, u time.Time)      { m.CreatedAt, m.UpdatedAt = c, u }
func (m *Tag) stamp(c, u time.Time)         { m.CreatedAt, m.UpdatedAt = c, u }
func (m *Association) stamp(c, u time.Time) { m.CreatedAt, m.UpdatedAt = c, u }

func (m *Property) created() time.Time    { return m.CreatedAt }
func (m *Object) created() time.Time      { return m.CreatedAt }
func (m *Tag) created() time.Time         { return m.CreatedAt }
func (m *Association) created() time.Time { return m.CreatedAt }

func (m *Property) updated() time.Time    { return m.UpdatedAt }
func (m *Object) updated() time.Time      { return m.UpdatedAt }
func (m *Tag) updated() time.Time         { return m.UpdatedAt }
func (m *Association) updated() time.Time { return m.UpdatedAt }

// recordPtr is a pointer to a record type T.
type recordPtr[T any] interface {
	*T
	record
}
