// Package etcdkv is the registry's engine for several daemons sharing one
// catalogue: kv.KV on an etcd v3 cluster. Reads see one revision of the
// cluster (a consistent snapshot); an Update reads at a revision, buffers
// its writes and commits them in one etcd transaction guarded by the
// revisions it read, retried when another daemon got there first (the
// pattern of JuiceFS's tkv layer); the change feed is etcd's watch.
package etcdkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/glimpse-project/glimpse/meta/kv"
)

// DB is a kv.KV on etcd, every key under the configured prefix.
type DB struct {
	members []*member // one per endpoint, each on its own connection
	pickMu  sync.Mutex
	turn    int // the next member pick tries first
	cfg     Config
	log     *slog.Logger
	ctx     context.Context // ends at Close
	close   context.CancelFunc
}

var _ kv.KV = (*DB)(nil)

const (
	// maxConflictRetries bounds Update's retries: with many daemons
	// writing one image at once a few rounds settle it.
	maxConflictRetries = 100
	// scanPage is how many keys one range request of a Scan reads.
	scanPage = 1000
	// getManyOps is how many keys one GetMany request reads (etcd's
	// default --max-txn-ops is 128).
	getManyOps = 128
	// defaultRequestTimeout bounds each View and Update, so that a daemon
	// cut off from etcd fails its calls instead of hanging them.
	defaultRequestTimeout = 5 * time.Second
	// rewatchDelay spaces the restarts of a broken watch.
	rewatchDelay = 200 * time.Millisecond
)

// Open connects to the cluster and checks that it answers.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*DB, error) {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = defaultRequestTimeout
	}
	dctx, cancel := context.WithCancel(context.Background())
	db := &DB{cfg: cfg, log: logger, ctx: dctx, close: cancel}
	var errs []error
	for _, ep := range cfg.Endpoints {
		m, err := dialMember(dctx, cfg, ep)
		if err != nil {
			// Only authentication fails here (the connection is made
			// in the background): a member that cannot authenticate
			// now is left out until the next start.
			errs = append(errs, err)
			continue
		}
		db.members = append(db.members, m)
	}
	if len(db.members) == 0 {
		cancel()
		return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, errors.Join(errs...))
	}
	for _, err := range errs {
		logger.Warn("etcd member left out: it did not authenticate", "err", err)
	}
	for _, m := range db.members {
		go db.probe(dctx, m)
	}
	pctx, pcancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer pcancel()
	if err := db.do(pctx, true, func(ctx context.Context, m *member) error {
		_, err := m.kv.Get(ctx, "\x00", clientv3.WithCountOnly())
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, err)
	}
	return db, nil
}

// Client is a connection to one member, for what needs etcd's own API
// (tests compact the cluster with it).
func (db *DB) Client() *clientv3.Client { return db.members[0].client }

// View implements kv.KV.
func (db *DB) View(ctx context.Context, fn func(kv.Txn) error) error {
	ctx, cancel := context.WithTimeout(ctx, db.cfg.RequestTimeout)
	defer cancel()
	return fn(&txn{db: db, ctx: ctx})
}

// Update implements kv.KV.
func (db *DB) Update(ctx context.Context, fn func(kv.Txn) error) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, db.cfg.RequestTimeout)
	defer cancel()
	for i := 0; ; i++ {
		t := &txn{db: db, ctx: ctx, update: true, reads: map[string]int64{}, writes: map[string]*write{}}
		if err := fn(t); err != nil {
			return 0, err
		}
		if len(t.order) == 0 {
			return 0, nil
		}
		rev, ok, err := t.commit()
		if err != nil {
			return 0, err
		}
		if ok {
			return rev, nil
		}
		if i >= maxConflictRetries {
			return 0, fmt.Errorf("etcd transaction: still conflicting after %d attempts", i+1)
		}
		// A short random pause, growing with the retries, so that writers
		// that keep colliding on one key spread out instead of retrying in
		// step.
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(100*time.Microsecond) << min(i, 6)))):
		case <-ctx.Done():
			return 0, mapErr(ctx.Err())
		}
	}
}

// Watch implements kv.KV.
func (db *DB) Watch(ctx context.Context, prefix []byte, fromRev int64) <-chan kv.Batch {
	ch := make(chan kv.Batch, 16)
	go func() {
		defer close(ch)
		next := fromRev
		if next <= 0 {
			rev, err := db.currentRevision(ctx)
			if err != nil {
				endWatch(ch, err)
				return
			}
			next = rev + 1
		}
		for {
			var err error
			next, err = db.watchOnce(ctx, ch, prefix, next)
			if db.ctx.Err() != nil {
				endWatch(ch, kv.ErrClosed)
				return
			}
			if ctx.Err() != nil {
				endWatch(ch, ctx.Err())
				return
			}
			if errors.Is(err, kv.ErrCompacted) {
				select {
				case ch <- kv.Batch{Err: err}:
				case <-ctx.Done():
				}
				return
			}
			db.log.Warn("registry watch broke; resuming", "from_revision", next, "err", err)
			select {
			case <-time.After(rewatchDelay):
			case <-ctx.Done():
				endWatch(ch, ctx.Err())
				return
			}
		}
	}()
	return ch
}

// watchOnce follows one etcd watch from revision next until it breaks, and
// returns the revision to resume from.
func (db *DB) watchOnce(ctx context.Context, ch chan<- kv.Batch, prefix []byte, next int64) (int64, error) {
	// WithRequireLeader ends the watch when the member it talks to loses
	// its leader (a partition), so it moves to a member that has one
	// rather than waiting in silence.
	// On a member found hung the watch is cut short and resumes on
	// another.
	m := db.pick()
	wctx, done := m.bind(clientv3.WithRequireLeader(ctx))
	defer done()
	wch := m.watcher.Watch(wctx, string(prefix), clientv3.WithPrefix(), clientv3.WithRev(next),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return next, fmt.Errorf("%w: revision %d, etcd keeps from %d on", kv.ErrCompacted, next, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return next, err
		}
		if len(resp.Events) == 0 {
			continue // progress notification
		}
		b := kv.Batch{Events: make([]kv.Event, 0, len(resp.Events))}
		for _, e := range resp.Events {
			ev := kv.Event{Rev: e.Kv.ModRevision, Key: e.Kv.Key}
			if e.Type == mvccpb.DELETE {
				ev.Deleted = true
				ev.Rev = e.Kv.ModRevision
			} else {
				ev.Value = e.Kv.Value
				if ev.Value == nil {
					ev.Value = []byte{}
				}
			}
			if e.PrevKv != nil {
				ev.Prev = e.PrevKv.Value
				if ev.Prev == nil {
					ev.Prev = []byte{}
				}
			}
			b.Events = append(b.Events, ev)
		}
		select {
		case ch <- b:
		case <-ctx.Done():
			return next, ctx.Err()
		}
		next = b.Events[len(b.Events)-1].Rev + 1
	}
	if err := ctx.Err(); err != nil {
		return next, err
	}
	if errors.Is(context.Cause(wctx), errMemberHung) {
		return next, fmt.Errorf("etcd watch on member %s: %w", m.ep, errMemberHung)
	}
	return next, errors.New("etcd watch closed")
}

func (db *DB) currentRevision(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, db.cfg.RequestTimeout)
	defer cancel()
	var rev int64
	err := db.do(ctx, true, func(ctx context.Context, m *member) error {
		resp, err := m.kv.Get(ctx, "\x00", clientv3.WithCountOnly())
		if err == nil {
			rev = resp.Header.Revision
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("etcd: %w", err)
	}
	return rev, nil
}

// endWatch delivers a watch's final error if the watcher still reads.
func endWatch(ch chan<- kv.Batch, err error) {
	select {
	case ch <- kv.Batch{Err: err}:
	default:
	}
}

// Close implements kv.KV.
func (db *DB) Close() error {
	db.close()
	var errs []error
	for _, m := range db.members {
		if err := m.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type write struct {
	value   []byte
	deleted bool
}

// txn reads at one revision of the cluster: the first read's, linearizable,
// then every later read at that revision.
type txn struct {
	db  *DB
	ctx context.Context
	rev int64

	update bool
	reads  map[string]int64 // key -> ModRevision seen (0: missing)
	scans  [][]byte         // prefixes scanned
	writes map[string]*write
	order  []string // keys written, in first-write order
}

func (t *txn) opts(extra ...clientv3.OpOption) []clientv3.OpOption {
	if t.rev != 0 {
		extra = append(extra, clientv3.WithRev(t.rev))
	}
	return extra
}

func (t *txn) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	var resp *clientv3.GetResponse
	err := t.db.do(t.ctx, true, func(ctx context.Context, m *member) (err error) {
		resp, err = m.kv.Get(ctx, key, t.opts(opts...)...)
		return err
	})
	if err != nil {
		return nil, mapErr(err)
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

func (t *txn) Revision() (int64, error) {
	if t.rev == 0 {
		if _, err := t.get("\x00", clientv3.WithCountOnly()); err != nil {
			return 0, err
		}
	}
	return t.rev, nil
}

func (t *txn) Get(key []byte) ([]byte, error) {
	if w, ok := t.writes[string(key)]; ok {
		if w.deleted {
			return nil, kv.ErrNotFound
		}
		return bytes.Clone(w.value), nil
	}
	resp, err := t.get(string(key))
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		t.noteRead(string(key), 0)
		return nil, kv.ErrNotFound
	}
	t.noteRead(string(key), resp.Kvs[0].ModRevision)
	v := resp.Kvs[0].Value
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

func (t *txn) noteRead(key string, modRev int64) {
	if t.update {
		if _, ok := t.reads[key]; !ok {
			t.reads[key] = modRev
		}
	}
}

func (t *txn) GetMany(keys [][]byte) ([][]byte, error) {
	values := make([][]byte, len(keys))
	var ask []int // indexes of the keys not written in this transaction
	for i, k := range keys {
		if w, ok := t.writes[string(k)]; ok {
			if !w.deleted {
				values[i] = bytes.Clone(w.value)
			}
			continue
		}
		ask = append(ask, i)
	}
	if len(ask) > 0 && t.rev == 0 {
		if _, err := t.Revision(); err != nil {
			return nil, err
		}
	}
	for len(ask) > 0 {
		n := min(len(ask), getManyOps)
		ops := make([]clientv3.Op, n)
		for j, i := range ask[:n] {
			ops[j] = clientv3.OpGet(string(keys[i]), clientv3.WithRev(t.rev))
		}
		var resp *clientv3.TxnResponse
		err := t.db.do(t.ctx, true, func(ctx context.Context, m *member) (err error) {
			resp, err = m.kv.Txn(ctx).Then(ops...).Commit() // reads only: safe to repeat
			return err
		})
		if err != nil {
			return nil, mapErr(err)
		}
		for j, i := range ask[:n] {
			r := resp.Responses[j].GetResponseRange()
			if r == nil || len(r.Kvs) == 0 {
				t.noteRead(string(keys[i]), 0)
				continue
			}
			t.noteRead(string(keys[i]), r.Kvs[0].ModRevision)
			v := r.Kvs[0].Value
			if v == nil {
				v = []byte{}
			}
			values[i] = v
		}
		ask = ask[n:]
	}
	return values, nil
}

func (t *txn) Scan(prefix []byte, fn func(key, value []byte) error) error {
	if t.update {
		t.scans = append(t.scans, bytes.Clone(prefix))
	}
	// This transaction's own writes under the prefix, merged in key order.
	var mine []string
	for _, k := range t.order {
		if bytes.HasPrefix([]byte(k), prefix) {
			mine = append(mine, k)
		}
	}
	sort.Strings(mine)
	emitMine := func(upTo []byte) error { // writes sorting before upTo (nil: all)
		for len(mine) > 0 && (upTo == nil || mine[0] < string(upTo)) {
			k := mine[0]
			mine = mine[1:]
			if w := t.writes[k]; !w.deleted {
				if err := fn([]byte(k), w.value); err != nil {
					return err
				}
			}
		}
		return nil
	}
	end := clientv3.GetPrefixRangeEnd(string(prefix))
	if len(prefix) == 0 {
		end = "\x00"
	}
	from := string(prefix)
	for {
		resp, err := t.get(from, clientv3.WithRange(end), clientv3.WithLimit(scanPage), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return err
		}
		for _, e := range resp.Kvs {
			if err := emitMine(e.Key); err != nil {
				return err
			}
			if _, written := t.writes[string(e.Key)]; written {
				if len(mine) > 0 && mine[0] == string(e.Key) {
					mine = mine[1:]
					if w := t.writes[string(e.Key)]; !w.deleted {
						if err := fn(e.Key, w.value); err != nil {
							return err
						}
					}
				}
				continue
			}
			if err := fn(e.Key, e.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	return emitMine(nil)
}

func (t *txn) Set(key, value []byte) error {
	if !t.update {
		return errors.New("etcd: write in a read-only transaction")
	}
	t.put(string(key), &write{value: bytes.Clone(value)})
	return nil
}

func (t *txn) Delete(key []byte) error {
	if !t.update {
		return errors.New("etcd: write in a read-only transaction")
	}
	t.put(string(key), &write{deleted: true})
	return nil
}

func (t *txn) put(key string, w *write) {
	if _, ok := t.writes[key]; !ok {
		t.order = append(t.order, key)
	}
	if w.value == nil && !w.deleted {
		w.value = []byte{}
	}
	t.writes[key] = w
}

// commit sends the buffered writes in one etcd transaction, applied only
// if nothing this transaction read has changed since its revision. ok is
// false when something had: the caller runs the transaction again.
func (t *txn) commit() (rev int64, ok bool, err error) {
	size := 0
	ops := make([]clientv3.Op, 0, len(t.order))
	for _, k := range t.order {
		w := t.writes[k]
		size += kv.Size([]byte(t.db.cfg.Prefix+k), w.value)
		if w.deleted {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(w.value)))
		}
	}
	switch {
	case size > kv.MaxTxnBytes:
		return 0, false, fmt.Errorf("%w: %d bytes written, at most %d", kv.ErrTooLarge, size, kv.MaxTxnBytes)
	case len(ops) > kv.MaxTxnOps:
		return 0, false, fmt.Errorf("%w: %d keys written, at most %d", kv.ErrTooLarge, len(ops), kv.MaxTxnOps)
	case len(t.reads) > kv.MaxTxnOps:
		return 0, false, fmt.Errorf("%w: %d keys read before writing, at most %d", kv.ErrTooLarge, len(t.reads), kv.MaxTxnOps)
	}
	cmps := make([]clientv3.Cmp, 0, len(t.reads)+len(t.scans))
	keys := make([]string, 0, len(t.reads))
	for k := range t.reads {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a stable request, easier to read in a trace
	for _, k := range keys {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", t.reads[k]))
	}
	if t.rev != 0 {
		// A scanned range conflicts when a key in it changed or appeared
		// after the revision read; a key removed from it goes unnoticed,
		// which no caller's scan-then-write depends on.
		for _, p := range t.scans {
			c := clientv3.Compare(clientv3.ModRevision(string(p)), "<", t.rev+1)
			if len(p) == 0 {
				c = c.WithRange("\x00")
			} else {
				c = c.WithPrefix()
			}
			cmps = append(cmps, c)
		}
	}
	var resp *clientv3.TxnResponse
	err = t.db.do(t.ctx, false, func(ctx context.Context, m *member) (err error) {
		resp, err = m.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
		return err
	})
	if errors.Is(err, kv.ErrUnavailable) {
		return 0, false, err
	}
	if err != nil {
		return 0, false, mapErr(err)
	}
	return resp.Header.Revision, resp.Succeeded, nil
}

// mapErr tells apart etcd's size refusals and the failures of a cluster
// that cannot answer now (no leader, no quorum, unreachable, too slow),
// the ones a caller acts on, and wraps the rest with where they came from.
func mapErr(err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrGRPCRequestTooLarge),
		errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrGRPCTooManyOps):
		return fmt.Errorf("%w: %v", kv.ErrTooLarge, err)
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, rpctypes.ErrNoLeader),
		errors.Is(err, rpctypes.ErrGRPCNoLeader), errors.Is(err, rpctypes.ErrLeaderChanged),
		errors.Is(err, rpctypes.ErrGRPCLeaderChanged), errors.Is(err, rpctypes.ErrTimeout),
		errors.Is(err, rpctypes.ErrGRPCTimeout), errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail),
		errors.Is(err, rpctypes.ErrGRPCTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost),
		errors.Is(err, rpctypes.ErrGRPCTimeoutDueToConnectionLost):
		return fmt.Errorf("%w: etcd: %v", kv.ErrUnavailable, err)
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return fmt.Errorf("%w: etcd: %v", kv.ErrUnavailable, err)
	}
	return fmt.Errorf("etcd: %w", err)
}
