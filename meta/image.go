package meta

import "time"

// Image is the registry's record of one image: Glance's image fields plus
// glimpse's own facts. It is stored as JSON (see keys.go).
type Image struct {
	ID              string            `json:"id"`
	Name            string            `json:"name"`
	Status          Status            `json:"status"`
	Visibility      string            `json:"visibility"`
	Protected       bool              `json:"protected"`
	OSHidden        bool              `json:"os_hidden"`
	Owner           string            `json:"owner"`
	DiskFormat      string            `json:"disk_format,omitempty"`
	ContainerFormat string            `json:"container_format,omitempty"`
	Size            *int64            `json:"size,omitempty"`
	VirtualSize     *int64            `json:"virtual_size,omitempty"`
	Checksum        string            `json:"checksum,omitempty"`
	OSHashAlgo      string            `json:"os_hash_algo,omitempty"`
	OSHashValue     string            `json:"os_hash_value,omitempty"`
	MinDisk         int64             `json:"min_disk"`
	MinRAM          int64             `json:"min_ram"`
	Tags            []string          `json:"tags,omitempty"`
	Properties      map[string]string `json:"properties,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`

	// StoreKey names the image's content in the store; empty while the
	// image owns no committed content.
	StoreKey string `json:"store_key,omitempty"`
	// Error says why the image was killed.
	Error string `json:"error,omitempty"`
	// DetectedFormat is the disk format the content was found to be when
	// it contradicts the declared disk_format and was accepted all the
	// same (require-image-format-match off); empty otherwise.
	DetectedFormat string `json:"detected_format,omitempty"`
	// Locations are URLs where the image's content stays (Glance's
	// locations); an image with locations owns no content in the store.
	Locations []Location `json:"locations,omitempty"`
	// HashPending is true while the content at Locations has not yet been
	// hashed (or, with validation data, verified) in the background.
	HashPending bool `json:"hash_pending,omitempty"`
	// WriterLease is the lease of the daemon doing the image's work in
	// flight (its upload, import or background hash), 0 when none: see
	// daemons.go. The Store keeps it.
	WriterLease int64 `json:"writer_lease,omitempty"`
}

// Location is one place where an image's content stays, read-only.
type Location struct {
	URL      string         `json:"url"`
	Metadata map[string]any `json:"metadata"`
}

// Clone returns a deep copy, so that callers can change it freely.
func (img *Image) Clone() *Image {
	c := *img
	if img.Size != nil {
		v := *img.Size
		c.Size = &v
	}
	if img.VirtualSize != nil {
		v := *img.VirtualSize
		c.VirtualSize = &v
	}
	c.Tags = append([]string(nil), img.Tags...)
	if img.Locations != nil {
		c.Locations = make([]Location, len(img.Locations))
		for i, l := range img.Locations {
			c.Locations[i] = Location{URL: l.URL, Metadata: cloneJSON(l.Metadata)}
		}
	}
	if img.Properties != nil {
		c.Properties = make(map[string]string, len(img.Properties))
		for k, v := range img.Properties {
			c.Properties[k] = v
		}
	}
	return &c
}

// Event reports one committed change: Old is nil for a creation, New is nil
// for a deletion. The change may come from any daemon sharing the
// catalogue.
type Event struct {
	Old, New *Image
	// Rev is the registry revision of the change.
	Rev int64
	// Resync, with Old and New nil, says that the feed may have missed
	// changes up to Rev: rebuild what was derived from the catalogue.
	Resync bool
}

// cloneJSON deep-copies a decoded JSON object.
func cloneJSON(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = cloneJSONValue(v)
	}
	return c
}

func cloneJSONValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cloneJSON(x)
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = cloneJSONValue(e)
		}
		return c
	}
	return v
}
