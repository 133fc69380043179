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
	// Safe to repeat: a lease revoked twice is revoked.
	err := l.db.do(ctx, true, func(ctx context.Context, m *member) error {
		_, err := m.lease.Revoke(ctx, l.id)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
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
	// Safe to repeat: a lease granted by a try cut short, and its key,
	// expire unrenewed after ttl.
	var id clientv3.LeaseID
	err := db.do(gctx, true, func(ctx context.Context, m *member) error {
		g, err := m.lease.Grant(ctx, secs)
		if err != nil {
			return err
		}
		if _, err := m.kv.Put(ctx, string(kv.LeaseKey(prefix, int64(g.ID))), string(value), clientv3.WithLease(g.ID)); err != nil {
			m.lease.Revoke(context.Background(), g.ID)
			return err
		}
		id = g.ID
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("grant lease: %w", mapErr(err))
	}
	kctx, kcancel := context.WithCancel(db.ctx)
	l := &lease{db: db, id: id, cancel: kcancel, lost: make(chan struct{})}
	go l.keepAlive(kctx)
	return l, nil
}

// keepAlive renews the lease through one member's keep-alive stream, and
// moves to another when that member is found hung (the stream would wait
// on it past the lease's ttl), until ctx ends or the lease is lost.
func (l *lease) keepAlive(ctx context.Context) {
	for {
		m := l.db.pick()
		mctx, done := m.bind(ctx)
		alive, err := m.lease.KeepAlive(mctx, l.id)
		if err == nil {
			for range alive {
			}
		}
		hung := errors.Is(context.Cause(mctx), errMemberHung)
		done()
		switch {
		case ctx.Err() != nil: // Revoke or Close
			return
		case hung:
			l.db.log.Warn("etcd member stopped answering; the lease is kept alive through another", "member", m.ep, "lease", fmt.Sprintf("%x", int64(l.id)))
			continue
		}
		// The client gave up keeping it alive: the lease expired before
		// a keep-alive got through.
		close(l.lost)
		return
	}
}

// Alive implements kv.KV.
func (db *DB) Alive(ctx context.Context, id int64) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, db.cfg.RequestTimeout)
	defer cancel()
	var resp *clientv3.LeaseTimeToLiveResponse
	err := db.do(ctx, true, func(ctx context.Context, m *member) (err error) {
		resp, err = m.lease.TimeToLive(ctx, clientv3.LeaseID(id))
		return err
	})
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lease %x: %w", id, mapErr(err))
	}
	return resp.TTL >= 0, nil // -1: expired or never granted; 0 only rounds a last second down
}
