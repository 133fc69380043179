package meta

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/glimpse-project/glimpse/meta/kv"
)

// The Store's events come from the engine's change feed, not from its own
// writers, so that a change made by any daemon sharing the catalogue (etcd)
// reaches every daemon's subscribers the same way. A writer waits until
// the feed has delivered its own commit before it returns, which keeps the
// old promise that subscribers have seen a change by the time the call that
// made it returns.

// publishWait bounds how long a writer waits for the feed to deliver its
// commit. Past it the change is made all the same (it is committed); the
// subscribers see it when the feed catches up.
const publishWait = 5 * time.Second

// feed follows the engine's watch of the image records and fans it out.
type feed struct {
	log *slog.Logger

	mu   sync.Mutex // guards subs and next
	subs map[int]func(Event)
	next int

	hooksMu sync.Mutex
	hooks   map[int]func(context.Context)
	nextHk  int

	pubMu     sync.Mutex
	published int64         // every change up to this revision is delivered
	moved     chan struct{} // closed (and replaced) when published moves
	broken    error         // the feed stopped for good (the registry closed)

	cancel context.CancelFunc
	done   chan struct{}
}

// startFeed delivers every change committed after revision from.
func (s *Store) startFeed(from int64, log *slog.Logger) { s.startFeedPaused(from, log, nil) }

// startFeedPaused is startFeed running before first (a test's subscribe)
// once the feed exists and before it follows the engine.
func (s *Store) startFeedPaused(from int64, log *slog.Logger, first func()) {
	ctx, cancel := context.WithCancel(context.Background())
	s.feed = &feed{
		log:       log,
		subs:      map[int]func(Event){},
		hooks:     map[int]func(context.Context){},
		published: from,
		moved:     make(chan struct{}),
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	if first != nil {
		first()
	}
	go s.follow(ctx, from)
}

// follow runs the watch until ctx ends or the registry closes; after a
// compaction it reads the revision again and tells the subscribers to
// resynchronise (an Event with Resync set).
func (s *Store) follow(ctx context.Context, from int64) {
	f := s.feed
	defer close(f.done)
	for {
		var err error
		for b := range s.kv.Watch(ctx, imagePrefix(), from+1) {
			if b.Err != nil {
				err = b.Err
				break
			}
			for _, kev := range b.Events {
				ev, derr := decodeEvent(kev)
				if derr != nil {
					f.log.Error("registry feed: undecodable record; skipped", "key", string(kev.Key), "rev", kev.Rev, "err", derr)
					continue
				}
				f.deliver(ev)
			}
			from = b.Events[len(b.Events)-1].Rev
			f.advance(from)
		}
		switch {
		case ctx.Err() != nil:
			f.stop(errors.New("registry feed stopped"))
			return
		case errors.Is(err, kv.ErrCompacted):
			f.log.Warn("registry feed fell behind a compaction; resynchronising", "err", err)
			rev, rerr := s.revision(ctx)
			if rerr != nil {
				f.log.Error("registry feed: reading the revision to resynchronise", "err", rerr)
				time.Sleep(time.Second)
				continue
			}
			from = rev
			f.deliver(Event{Resync: true, Rev: rev})
			f.advance(rev)
		case err == nil, errors.Is(err, kv.ErrClosed):
			f.stop(kv.ErrClosed)
			return
		default:
			// The engine resumes broken connections itself; anything else
			// ending the watch is retried from the same point.
			f.log.Warn("registry feed broke; resuming", "from_revision", from+1, "err", err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func decodeEvent(kev kv.Event) (Event, error) {
	ev := Event{Rev: kev.Rev}
	if kev.Prev != nil {
		img, err := decode(kev.Prev)
		if err != nil {
			return ev, err
		}
		ev.Old = img
	}
	if !kev.Deleted {
		img, err := decode(kev.Value)
		if err != nil {
			return ev, err
		}
		ev.New = img
	}
	return ev, nil
}

func (s *Store) revision(ctx context.Context) (int64, error) {
	var rev int64
	err := s.kv.View(ctx, func(tx kv.Txn) error {
		var err error
		rev, err = tx.Revision()
		return err
	})
	return rev, err
}

func (f *feed) deliver(ev Event) {
	f.mu.Lock()
	subs := make([]func(Event), 0, len(f.subs))
	for _, fn := range f.subs {
		subs = append(subs, fn)
	}
	f.mu.Unlock()
	for _, fn := range subs {
		fn(ev)
	}
}

func (f *feed) advance(rev int64) {
	f.pubMu.Lock()
	defer f.pubMu.Unlock()
	if rev > f.published {
		f.published = rev
		close(f.moved)
		f.moved = make(chan struct{})
	}
}

func (f *feed) stop(err error) {
	f.pubMu.Lock()
	defer f.pubMu.Unlock()
	f.broken = err
	close(f.moved)
	f.moved = make(chan struct{})
}

// await waits until the change committed at rev has been delivered, then
// runs the after-commit hooks with the writer's context.
func (s *Store) await(ctx context.Context, rev int64) {
	f := s.feed
	if rev > 0 {
		timeout := time.NewTimer(publishWait)
		defer timeout.Stop()
	wait:
		for {
			f.pubMu.Lock()
			ok, broken, moved := f.published >= rev, f.broken, f.moved
			f.pubMu.Unlock()
			if ok || broken != nil {
				break
			}
			select {
			case <-moved:
			case <-ctx.Done():
				break wait
			case <-timeout.C:
				f.log.Warn("the registry feed is slow: a change is committed but not yet shown everywhere", "revision", rev)
				break wait
			}
		}
	}
	f.hooksMu.Lock()
	hooks := make([]func(context.Context), 0, len(f.hooks))
	for _, fn := range f.hooks {
		hooks = append(hooks, fn)
	}
	f.hooksMu.Unlock()
	for _, fn := range hooks {
		fn(ctx)
	}
}

// Subscribe registers fn to be called for every change committed to the
// catalogue, by this daemon or any other sharing it, in commit order, from
// one goroutine; a change this daemon makes has been delivered by the time
// the call that made it returns. fn must return quickly and must not call
// the Store's writers. An Event with Resync set says that changes may have
// been missed (the feed fell behind a compaction): rebuild whatever was
// derived from the catalogue. The returned function unsubscribes.
func (s *Store) Subscribe(fn func(Event)) (cancel func()) {
	f := s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.next
	f.next++
	f.subs[id] = fn
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, id)
	}
}

// AfterCommit registers fn to run in the goroutine of every writer of this
// Store, with the writer's context, once the subscribers have been handed
// its change: the mount uses it to make a REST caller wait until the
// kernel's caches are invalidated. The returned function unregisters.
func (s *Store) AfterCommit(fn func(context.Context)) (cancel func()) {
	f := s.feed
	f.hooksMu.Lock()
	defer f.hooksMu.Unlock()
	id := f.nextHk
	f.nextHk++
	f.hooks[id] = fn
	return func() {
		f.hooksMu.Lock()
		defer f.hooksMu.Unlock()
		delete(f.hooks, id)
	}
}

// Close stops the feed. The engine is the caller's to close.
func (s *Store) Close() {
	s.feed.cancel()
	<-s.feed.done
}
