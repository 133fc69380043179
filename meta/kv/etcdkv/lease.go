package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/glimpse-project/glimpse/meta/kv"
)

// lease is an etcd lease kept alive by the client until Revoke or Close.
type lease struct {
	db     *DB
	id     clientv3.LeaseID
	cancel context.CancelFunc
	lost   chan struct{}
	once   sync.Once
}

func (l *lease) ID() int64             { return int64(l.id) }
func (l *lease) Lost() <-chan struct{} { return l.lost }

func (l *lease) Revoke(ctx context.Context) error {
	l.once.Do(func() { l.cancel() })
	ctx, cancel := context.WithTimeout(ctx, l.db.cfg.RequestTimeout)
	defer cancel()
	if _, err := l.db.lease.Revoke(ctx, l.id); err != nil {
		return fmt.Errorf("revoke lease %x: %w", int64(l.id), mapErr(err))
	}
	return nil
}

// Grant implements kv.KV: an etcd lease of ttl (rounded up to seconds, at
// least 2, etcd's floor on loopback), key put with it in one request.
func (db *DB) Grant(ctx context.Context, ttl time.Duration, prefix, value []byte) (kv.Lease, error) {
	secs := int64(math.Ceil(ttl.Seconds()))
	if secs < 2 {
		secs = 2
	}
	gctx, cancel := context.WithTimeout(ctx, db.cfg.RequestTimeout)
	defer cancel()
	g, err := db.lease.Grant(gctx, secs)
	if err != nil {
		return nil, fmt.Errorf("grant lease: %w", mapErr(err))
	}
	if _, err := db.kv.Put(gctx, string(kv.LeaseKey(prefix, int64(g.ID))), string(value), clientv3.WithLease(g.ID)); err != nil {
		db.lease.Revoke(context.Background(), g.ID)
		return nil, fmt.Errorf("grant lease: %w", mapErr(err))
	}
	kctx, kcancel := context.WithCancel(context.Background())
	alive, err := db.lease.KeepAlive(kctx, g.ID)
	if err != nil {
		kcancel()
		db.lease.Revoke(context.Background(), g.ID)
		return nil, fmt.Errorf("keep lease alive: %w", mapErr(err))
	}
	l := &lease{db: db, id: g.ID, cancel: kcancel, lost: make(chan struct{})}
	go func() {
		for range alive {
		}
		// The client gave up keeping it alive (the lease expired before a
		// keep-alive got through), or Revoke or Close stopped it.
		if kctx.Err() == nil {
			close(l.lost)
		}
	}()
	return l, nil
}

// Alive implements kv.KV.
func (db *DB) Alive(ctx context.Context, id int64) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, db.cfg.RequestTimeout)
	defer cancel()
	resp, err := db.lease.TimeToLive(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lease %x: %w", id, mapErr(err))
	}
	return resp.TTL >= 0, nil // -1: expired or never granted; 0 only rounds a last second down
}
