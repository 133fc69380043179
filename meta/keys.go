package meta

import (
	"bytes"
	"strings"
)

// Keys. Every key the registry writes is listed here, each with the one
// function that builds it:
//
//	v                              schema version (decimal text)
//	i/<id>                         the image record, JSON of Image
//	s/<status>/<id>                empty; every image, by status
//	n/<status>/<name>\x00<id>      empty; images whose name can be a file
//	                               name (see Listable), by status and name
//	m/<id>                         how many members the image has (decimal
//	                               text); every change of its members reads
//	                               and writes it, so that concurrent ones
//	                               conflict (a prefix scan is not a read of
//	                               the keys another transaction adds)
//	m/<id>/<member>                one member of an image (sharing), JSON
//	                               of Member
//	M/<member>\x00<id>             the member's status (text); every image
//	                               shared with a project, by project
//
// The name index sorts by name within a status, so the images sharing a
// name are adjacent: a status directory is one prefix scan, and a name
// lookup is one shorter one. Image ids are UUIDs, so m/<id>/ holds exactly
// one image's members; member ids are free text without NUL, so the M index
// separates them from the image id with one. The member keys came after
// version 1 without changing it: a registry without them has no members.
const schemaVersion = "1"

var versionKey = []byte("v")

func imageKey(id string) []byte { return []byte("i/" + id) }

func imagePrefix() []byte { return []byte("i/") }

func statusKey(s Status, id string) []byte { return []byte("s/" + string(s) + "/" + id) }

func statusPrefix(s Status) []byte { return []byte("s/" + string(s) + "/") }

func nameKey(s Status, name, id string) []byte {
	return []byte("n/" + string(s) + "/" + name + "\x00" + id)
}

func memberCountKey(id string) []byte { return []byte("m/" + id) }

func memberKey(id, member string) []byte { return []byte("m/" + id + "/" + member) }

func memberPrefix(id string) []byte { return []byte("m/" + id + "/") }

func sharedKey(member, id string) []byte { return []byte("M/" + member + "\x00" + id) }

func sharedPrefix(member string) []byte { return []byte("M/" + member + "\x00") }

// namePrefix is the prefix of every name-index key in status s, or, with a
// name, of the keys of the images holding exactly that name.
func namePrefix(s Status, name string, exact bool) []byte {
	p := "n/" + string(s) + "/" + name
	if exact {
		p += "\x00"
	}
	return []byte(p)
}

// splitNameKey returns the name and id of a name-index key under prefix
// (namePrefix(s, "", false)).
func splitNameKey(prefix, key []byte) (name, id string) {
	rest := key[len(prefix):]
	i := bytes.LastIndexByte(rest, 0)
	return string(rest[:i]), string(rest[i+1:])
}

// Listable reports whether name can stand as a file name in a status
// directory. Other names are shown only under images/ (by id).
func Listable(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}
