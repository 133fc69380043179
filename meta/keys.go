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
//	u/<project>\x00<shard>          JSON of Usage: a share of what the
//	                               project holds (the sum of its shards),
//	                               changed with every change of its images
//	d/<lease>                      JSON of Daemon; one per daemon holding a
//	                               lease on the catalogue (kv.LeaseKey),
//	                               tied to the lease
//
// The name index sorts by name within a status, so the images sharing a
// name are adjacent: a status directory is one prefix scan, and a name
// lookup is one shorter one.
//
// Schema 2 added u/; a schema 1 registry is upgraded at Open (stop every
// daemon of a shared registry before starting the upgraded ones).
const schemaVersion = "2"

var versionKey = []byte("v")

func imageKey(id string) []byte { return []byte("i/" + id) }

func imagePrefix() []byte { return []byte("i/") }

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
