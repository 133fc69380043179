package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/glimpse-project/glimpse/meta/kv"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
	"github.com/glimpse-project/glimpse/meta/kv/etcdkv"
)

// defaultLeaseTTL: a dead daemon's uploads are killed this long after it
// died; shorter would let a daemon that stalls briefly (a long GC, a slow
// disk) lose its uploads.
const defaultLeaseTTL = 10 * time.Second

// reapInterval is how often the daemon looks for the work of gone daemons:
// twice per lease, so a dead daemon's upload is killed within 1.5 ttl.
func reapInterval(ttl time.Duration) time.Duration { return max(ttl/2, 500*time.Millisecond) }

// openRegistry opens the key-value engine named by --registry: badger
// under DATA/registry by default, or an etcd cluster (etcd://, etcds://)
// that several daemons share. It returns a description for the logs, with
// no password in it.
func openRegistry(ctx context.Context, raw, data string, log *slog.Logger) (kv.KV, string, error) {
	if raw == "" || raw == "badger" {
		dir := filepath.Join(data, "registry")
		db, err := badgerkv.Open(dir, log)
		return db, "badger:" + dir, err
	}
	if !strings.HasPrefix(raw, "etcd://") && !strings.HasPrefix(raw, "etcds://") {
		return nil, "", fmt.Errorf("--registry %q: want etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (or nothing, for badger under --data)", etcdkv.Redacted(raw))
	}
	cfg, err := etcdkv.ParseURL(raw)
	if err != nil {
		return nil, "", fmt.Errorf("--registry: %w", err)
	}
	db, err := etcdkv.Open(ctx, cfg, log)
	if err != nil {
		return nil, "", fmt.Errorf("--registry: %w", err)
	}
	return db, etcdkv.Redacted(raw), nil
}
