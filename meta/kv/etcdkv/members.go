package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"

	"github.com/glimpse-project/glimpse/meta/kv"
)

// A member that hangs without closing its connections (SIGSTOP, a frozen
// VM, a host cut off with no reset) is the failure the etcd client handles
// worst. Its gRPC connection looks healthy until keep-alive gives up on it,
// and grpc-go raises any client keep-alive interval below 10 s to 10 s
// (etcd's --grpc-keepalive-min-time would refuse faster pings anyway): 12 s
// with our 2 s ping timeout. Meanwhile one client's round-robin balancer
// sends every third request to the hung member, and each waits out its
// whole request timeout. A killed member, whose connection resets, is left
// at once; a hung one is not.
//
// So glimpse reaches each member on a connection of its own, sends each
// call to a member that answers, and probes every member twice a second
// with a read it serves from memory (serializable: no disk, no quorum).
// A member that misses two probes in a row (2 s) is hung: the calls in
// flight on it are cut short (a read runs again on another member; a
// write fails as unavailable, made or not, as a timeout would) and no new
// call goes to it until it answers a probe again. A member merely slow
// (a busy disk) still answers the probe; and if no member answers, nothing
// is cut short: the calls run to their request timeout, as before.

const (
	probeInterval = 500 * time.Millisecond
	probeTimeout  = time.Second
	// probeMisses is how many probes in a row a member must miss to be
	// called hung: one late answer on a loaded machine is not a hang.
	probeMisses = 2
)

// errMemberHung is the cause of a call's context cut short because its
// member stopped answering.
var errMemberHung = errors.New("etcd member stopped answering")

// member is one etcd member, on its own connection.
type member struct {
	ep      string
	client  *clientv3.Client
	kv      clientv3.KV
	watcher clientv3.Watcher
	lease   clientv3.Lease

	mu     sync.Mutex
	hung   bool
	misses int
	calls  map[uint64]context.CancelCauseFunc // calls in flight on this member
	nextID uint64
}

func dialMember(ctx context.Context, cfg Config, ep string) (*member, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints: []string{ep},
		// Bounds only the authentication with Username; the connection
		// itself is made in the background, so that a member down at
		// start does not stop the daemon starting on the others.
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Username:             cfg.Username,
		Password:             cfg.Password,
		TLS:                  cfg.TLS,
		Context:              ctx,
		// The client's own logging is zap; glimpse logs through slog,
		// from the errors the client returns.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd member %s: %w", ep, err)
	}
	return &member{
		ep:      ep,
		client:  c,
		kv:      namespace.NewKV(c.KV, cfg.Prefix),
		watcher: namespace.NewWatcher(c.Watcher, cfg.Prefix),
		lease:   namespace.NewLease(c.Lease, cfg.Prefix),
		calls:   map[uint64]context.CancelCauseFunc{},
	}, nil
}

// bind returns ctx for a call on m, cut short with errMemberHung if m is
// found hung while the call runs; done must be called when it ends.
func (m *member) bind(ctx context.Context) (_ context.Context, done func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	m.mu.Lock()
	id := m.nextID
	m.nextID++
	m.calls[id] = cancel
	m.mu.Unlock()
	return ctx, func() {
		m.mu.Lock()
		delete(m.calls, id)
		m.mu.Unlock()
		cancel(nil)
	}
}

// ready reports whether m's connection is up or may be (not failing).
func (m *member) ready() bool {
	st := m.client.ActiveConnection().GetState()
	return st != connectivity.TransientFailure && st != connectivity.Shutdown
}

// pick returns the member for the next call: the next in turn of those
// that answer, or, when none does, of all (the call then waits or times
// out, as it would have).
func (db *DB) pick() *member {
	db.pickMu.Lock()
	defer db.pickMu.Unlock()
	n := len(db.members)
	var fallback *member
	for i := 0; i < n; i++ {
		m := db.members[(db.turn+i)%n]
		m.mu.Lock()
		hung := m.hung
		m.mu.Unlock()
		if hung {
			continue
		}
		if m.ready() {
			db.turn = (db.turn + i + 1) % n
			return m
		}
		if fallback == nil {
			fallback = m
		}
	}
	if fallback == nil {
		fallback = db.members[db.turn%n]
	}
	db.turn = (db.turn + 1) % n
	return fallback
}

// do runs call on a member that answers. A call cut short because its
// member hung runs again on another if retry (a read, or anything else
// safe to repeat); otherwise it fails as unavailable.
func (db *DB) do(ctx context.Context, retry bool, call func(context.Context, *member) error) error {
	for {
		m := db.pick()
		cctx, done := m.bind(ctx)
		err := call(cctx, m)
		hung := err != nil && errors.Is(context.Cause(cctx), errMemberHung)
		done()
		switch {
		case !hung || ctx.Err() != nil:
			return err
		case !retry:
			return fmt.Errorf("%w: etcd member %s stopped answering during a write, which may or may not have been made", kv.ErrUnavailable, m.ep)
		}
		db.log.Debug("etcd member stopped answering; the read goes to another", "member", m.ep)
	}
}

// probe watches over m until ctx ends.
func (db *DB) probe(ctx context.Context, m *member) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		_, err := m.kv.Get(pctx, "\x00", clientv3.WithSerializable(), clientv3.WithCountOnly())
		cancel()
		if ctx.Err() != nil {
			return
		}
		db.noteProbe(m, err)
	}
}

// noteProbe records a probe's outcome, and marks m hung (cutting its calls
// short) or answering again.
func (db *DB) noteProbe(m *member, err error) {
	m.mu.Lock()
	if err == nil {
		was := m.hung
		m.hung, m.misses = false, 0
		m.mu.Unlock()
		if was {
			db.log.Info("etcd member answers again", "member", m.ep)
		}
		return
	}
	m.misses++
	if m.hung || m.misses < probeMisses {
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	// Leave at least one member in use: if none answers, cutting calls
	// short gains nothing (the cluster is down, or only slow).
	if !db.othersAnswer(m) {
		return
	}
	m.mu.Lock()
	m.hung = true
	calls := make([]context.CancelCauseFunc, 0, len(m.calls))
	for _, cancel := range m.calls {
		calls = append(calls, cancel)
	}
	m.mu.Unlock()
	db.log.Warn("etcd member stopped answering; calls go to the others until it answers again",
		"member", m.ep, "err", err, "calls_cut_short", len(calls))
	for _, cancel := range calls {
		cancel(errMemberHung)
	}
}

// othersAnswer reports whether some member other than m answers.
func (db *DB) othersAnswer(m *member) bool {
	for _, o := range db.members {
		if o == m {
			continue
		}
		o.mu.Lock()
		ok := !o.hung && o.misses == 0
		o.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}
