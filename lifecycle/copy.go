package lifecycle

import "strings"

// Copying attributes. A tool that copies a file with its extended
// attributes (cp -a, cp --preserve=xattr, rsync -aX) sets every user.*
// attribute of the source on the copy, and rsync also removes those the
// source lacks. For an image the copy keeps its own identity and the facts
// its own content gives (id, status, size, hashes, formats, times, owner,
// glimpse.*), keeps the name it was copied to, and takes the source's
// settable and custom properties (visibility, protected, os_hidden,
// min_disk, min_ram, tags, and the rest). The mount decides who is copying
// (the process that created the image); these say what a copy changes.

// copyKeeps reports whether a copy of attributes leaves key as the copy has it.
func copyKeeps(key string) bool {
	switch {
	case readOnlyKeys[key], key == "name", key == "disk_format", key == "container_format",
		strings.HasPrefix(key, glimpsePrefix), strings.HasPrefix(key, reservedKeyPrefix):
		return true
	}
	return false
}

// CopiedOp is the change that copying the attribute key, with the text
// Glance shows for it, makes to a copy; nil when the copy keeps its own
// value. A malformed value is ErrInvalid, as when set by hand.
func CopiedOp(key, text string) (*Op, error) {
	if copyKeeps(key) {
		return nil, nil
	}
	v, err := ParseText(key, text)
	if err != nil {
		return nil, err
	}
	return &Op{Op: "replace", Key: key, Value: v}, nil
}

// UncopiedOp is the change that removing the attribute key (one the source
// of a copy lacks) makes to the copy; nil for base properties, which every
// image has.
func UncopiedOp(key string) *Op {
	if IsBaseKey(key) || copyKeeps(key) {
		return nil
	}
	return &Op{Op: "remove", Key: key}
}
