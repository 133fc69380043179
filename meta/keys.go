package meta

import (
	"bytes"
	"fmt"
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
//	w/<id>                         empty; images with work in flight owned
//	                               by a daemon's lease (WriterLease != 0)
//
//	t/<id>                         a task record (Glance's tasks API), JSON
//	                               of Task
//
//	md/ns/<namespace>              a metadefs namespace, JSON (package
//	                               lifecycle/metadefs)
//	md/ob/<namespace>\x00<name>    an object of the namespace, JSON
//	md/pr/<namespace>\x00<name>    a property of the namespace, JSON
//	md/tg/<namespace>\x00<name>    a tag of the namespace, JSON
//	md/as/<namespace>\x00<type>    the namespace's association with a
//	                               resource type, JSON
//	md/rt/<type>                   a resource type, JSON
//
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
//	u/<project>\x00<shard>          JSON of Usage: a share of what the
//	                               project holds (the sum of its shards),
//	                               changed with every change of its images
//	d/<lease>                      JSON of Daemon; one per daemon holding a
//	                               lease on the catalogue (kv.LeaseKey),
//	                               tied to the lease
//
// The name index sorts by name within a status, so the images sharing a
// name are adjacent: a status directory is one prefix scan, and a name
// lookup is one shorter one. A metadefs namespace's contents share the
// prefix of their kind and namespace (namespace names cannot hold NUL), so
// listing or deleting them is one prefix scan. Image ids are UUIDs, so
// m/<id>/ holds exactly one image's members; member ids are free text
// without NUL, so the M index separates them from the image id with one.
// The member keys came after version 1 without changing it: a registry
// without them has no members.
//
// Schema 2 added u/; a schema 1 registry is upgraded at Open (stop every
// daemon of a shared registry before starting the upgraded ones).
const schemaVersion = "2"

var versionKey = []byte("v")

func imageKey(id string) []byte { return []byte("i/" + id) }

func imagePrefix() []byte { return []byte("i/") }

func taskKey(id string) []byte { return []byte("t/" + id) }

func taskPrefix() []byte { return []byte("t/") }

func daemonPrefix() []byte { return []byte("d/") }

func workKey(id string) []byte { return []byte("w/" + id) }

func workPrefix() []byte { return []byte("w/") }

func usageKey(project string, shard int) []byte {
	return fmt.Appendf(nil, "u/%s\x00%02d", project, shard)
}

func usagePrefix(project string) []byte { return []byte("u/" + project + "\x00") }

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

// MetadefNamespaceKey is the key of the metadefs namespace ns; with ns ""
// it is the prefix of every namespace's key.
func MetadefNamespaceKey(ns string) []byte { return []byte("md/ns/" + ns) }

// MetadefKind names the kinds of record a metadefs namespace holds.
type MetadefKind string

const (
	MetadefObject      MetadefKind = "ob"
	MetadefProperty    MetadefKind = "pr"
	MetadefTag         MetadefKind = "tg"
	MetadefAssociation MetadefKind = "as"
)

// MetadefMemberKey is the key of the record of kind k named name in the
// namespace ns; with name "" it is the prefix of all of them.
func MetadefMemberKey(k MetadefKind, ns, name string) []byte {
	return []byte("md/" + string(k) + "/" + ns + "\x00" + name)
}

// MetadefResourceTypeKey is the key of the resource type name; with name ""
// it is the prefix of every resource type's key.
func MetadefResourceTypeKey(name string) []byte { return []byte("md/rt/" + name) }
