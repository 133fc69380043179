// Package rbd stores objects as Ceph RBD images, through
// github.com/ceph/go-ceph (cgo, librbd and librados). It is compiled only
// with the build tag ceph (and, for Ceph 16 "pacific" as Debian bookworm
// ships it, go-ceph's tag pacific):
//
//	apt-get install librbd-dev librados-dev
//	go build -tags ceph,pacific ./cmd/glimpse
//
// Without the tag, Open says that this binary lacks RBD support.
//
// Each object is one RBD image named by its key in the pool, as Glance's rbd
// driver names an image by its id. A Writer creates the image under a
// temporary name (PartialPrefix + key + "." + random), grows it and writes
// the bytes as they stream in (WriteAt; out-of-order writes and Truncate
// too: it is a backend.RandomWriter), and Commit flushes it, takes the
// snapshot SnapName and protects it (so Ceph-aware consumers such as Nova
// and Cinder can clone from pool/key@snap, as with Glance) and only then
// renames it to its key. AbortIncomplete removes every image whose name
// starts with PartialPrefix. The pool belongs to glimpse: List reports every
// other image in it.
package rbd

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

const (
	// SnapName is the snapshot taken and protected at Commit, as Glance
	// names it.
	SnapName = "snap"
	// PartialPrefix starts the names of images not yet committed.
	PartialPrefix = "glimpse-partial."
	// DefaultChunkSize is how many sequential bytes a Writer gathers before
	// it writes them to the image: the default RBD object size.
	DefaultChunkSize = 4 << 20
	// DefaultOpTimeout bounds every RADOS operation, so that a dead cluster
	// fails a write instead of hanging it.
	DefaultOpTimeout = 30 * time.Second
)

// Config says which cluster and pool hold the images.
type Config struct {
	// Pool holds the images; it is created (and tagged for rbd) if missing.
	Pool string
	// Namespace, if not empty, is the RBD namespace in Pool that holds the
	// images (created if missing), so that several stores can share a pool.
	Namespace string
	// ConfFile is the ceph.conf to read; empty: librados's default search
	// ($CEPH_CONF, /etc/ceph/ceph.conf, ...).
	ConfFile string
	// User is the cephx client id (the "glance" of client.glance); empty:
	// librados's default (admin).
	User string
	// OpTimeout bounds each monitor and OSD operation and the connection
	// (rados_osd_op_timeout, rados_mon_op_timeout, client_mount_timeout);
	// default DefaultOpTimeout.
	OpTimeout time.Duration
	// ChunkSize: see DefaultChunkSize.
	ChunkSize int
}

// ParseURL parses rbd://POOL[?user=ID&conf=PATH&namespace=NS]; the
// configuration file comes from env("CEPH_CONF") unless conf= names one.
func ParseURL(raw string, env func(string) string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("rbd store: %w", err)
	}
	if u.Scheme != "rbd" {
		return Config{}, fmt.Errorf("rbd store: %q is not an rbd:// URL", raw)
	}
	if u.Host == "" {
		return Config{}, fmt.Errorf("rbd store: %q names no pool (rbd://POOL)", raw)
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		return Config{}, fmt.Errorf("rbd store: %q: a pool has no path (rbd://POOL)", raw)
	}
	q := u.Query()
	cfg := Config{Pool: u.Host, ConfFile: env("CEPH_CONF"), User: q.Get("user"), Namespace: q.Get("namespace")}
	if c := q.Get("conf"); c != "" {
		cfg.ConfFile = c
	}
	return cfg, nil
}
