package lifecycle

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/glimpse-project/glimpse/meta"
)

// fuzzValue turns the fuzzer's bytes into a value of each JSON type an Op
// carries, so that every key meets every type.
func fuzzValue(kind byte, text string, n int64, x float64) any {
	switch kind % 9 {
	case 0:
		return text
	case 1:
		return n%2 == 0
	case 2:
		return n
	case 3:
		return x
	case 4:
		return json.Number(text)
	case 5:
		return nil
	case 6:
		return strings.Split(text, "\x00")
	case 7:
		var list []any
		for _, s := range strings.Split(text, "\x00") {
			list = append(list, s)
		}
		return append(list, n)
	}
	return map[string]any{text: n}
}

// FuzzApply: the patch applier on any op, key and value. A refused op
// leaves the image exactly as it was; an accepted one leaves it within
// Glance's limits, and a custom property reads back as set.
func FuzzApply(f *testing.F) {
	for _, seed := range []struct {
		op, key string
		kind    byte
		text    string
		n       int64
		x       float64
	}{
		{"replace", "name", 0, "debian", 0, 0},
		{"add", "os_distro", 0, "debian", 0, 0},
		{"remove", "os_distro", 0, "", 0, 0},
		{"replace", "min_ram", 2, "", 512, 0},
		{"replace", "min_disk", 3, "", 0, 1e300},
		{"replace", "min_ram", 4, "99999999999999999999", 0, 0},
		{"replace", "tags", 6, "a\x00b\x00a,b", 0, 0},
		{"replace", "tags", 7, "a", 3, 0},
		{"replace", "visibility", 0, "public", 0, 0},
		{"replace", "protected", 1, "", 0, 0},
		{"replace", "disk_format", 0, "qcow2", 0, 0},
		{"add", "status", 0, "active", 0, 0},
		{"add", "glimpse.error", 0, "x", 0, 0},
		{"add", "os_glance_x", 0, "x", 0, 0},
		{"add", "k\x01", 0, "v", 0, 0},
		{"add", "k", 0, "\xff", 0, 0},
		{"add", "", 8, "x", 1, 0},
		{"move", "name", 0, "x", 0, 0},
	} {
		f.Add(seed.op, seed.key, seed.kind, seed.text, seed.n, seed.x, true)
	}
	f.Fuzz(func(t *testing.T, op, key string, kind byte, text string, n int64, x float64, admin bool) {
		size := int64(3)
		img := &meta.Image{
			ID: NewID(), Name: "fuzzed", Status: meta.Queued, Visibility: "shared", Owner: "p1",
			DiskFormat: "raw", ContainerFormat: "bare", Size: &size, Tags: []string{"t"},
			Properties: map[string]string{"os_distro": "debian"}, CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(1, 0),
		}
		before := img.Clone()
		value := fuzzValue(kind, text, n, x)
		if err := apply(img, Op{Op: op, Key: key, Value: value}, func(string) bool { return admin }); err != nil {
			if !reflect.DeepEqual(img, before) {
				t.Fatalf("refused %s %q (%v) changed the image:\n%+v\n%+v", op, key, err, before, img)
			}
			return
		}
		if img.ID != before.ID || img.Status != before.Status || img.Owner != before.Owner || *img.Size != size {
			t.Fatalf("%s %q changed a read-only field: %+v", op, key, img)
		}
		if ValidName(img.Name) != nil || img.MinDisk < 0 || img.MinRAM < 0 || img.MinRAM > math.MaxInt32 || img.MinDisk > math.MaxInt32 {
			t.Fatalf("%s %q let in name %q, min_disk %d, min_ram %d", op, key, img.Name, img.MinDisk, img.MinRAM)
		}
		if img.Visibility == "public" && !admin {
			t.Fatal("a non-admin publicized an image")
		}
		for _, tag := range img.Tags {
			if tag == "" || strings.Contains(tag, ",") || len(tag) > MaxTagLength || !utf8.ValidString(tag) {
				t.Fatalf("tag %q got in", tag)
			}
		}
		for k, v := range img.Properties {
			if ValidKey(k) != nil || IsBaseKey(k) || len(v) > MaxValueLength || !utf8.ValidString(v) {
				t.Fatalf("property %q=%q got in", k, v)
			}
		}
		if op != "remove" && !IsBaseKey(key) {
			if got, ok := Lookup(img, key); !ok || got != value.(string) {
				t.Fatalf("custom %q set to %q reads back %q", key, value, got)
			}
		}
	})
}
