package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/glimpse-project/glimpse/meta/kv"
)

// Daemons sharing a catalogue each hold a lease on it (see kv.Lease). The
// work a daemon does on an image in flight (an upload, an import, the
// background hash of a location) is stamped with its lease in the record
// (Image.WriterLease), so that when the daemon dies a survivor knows the
// work is nobody's and settles it.

// Daemon is one daemon holding a lease on the catalogue.
type Daemon struct {
	Lease   int64     `json:"-"` // from the record's key
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// membership is this Store's lease, renewed when lost.
type membership struct {
	lease atomic.Int64 // 0 until Join
	held  atomic.Pointer[kv.Lease]
}

// Join takes this daemon's lease on the catalogue, of about ttl: other
// daemons see it end that long after this process stops renewing it. If
// the lease is lost (the registry unreachable for ttl), Join's goroutine
// takes a new one; the work stamped with the old one is then the
// survivors' to settle. It runs until ctx ends.
func (s *Store) Join(ctx context.Context, ttl time.Duration) error {
	l, err := s.grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("join the catalogue: %w", err)
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-l.Lost():
			}
			s.feed.log.Error("lost this daemon's lease on the registry; its uploads in flight will be killed by the other daemons", "lease", fmt.Sprintf("%x", l.ID()))
			for {
				nl, err := s.grant(ctx, ttl)
				if err == nil {
					l = nl
					break
				}
				s.feed.log.Error("taking a new lease on the registry", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
	}()
	return nil
}

func (s *Store) grant(ctx context.Context, ttl time.Duration) (kv.Lease, error) {
	host, _ := os.Hostname()
	v, err := json.Marshal(Daemon{Host: host, PID: os.Getpid(), Started: s.now()})
	if err != nil {
		return nil, err
	}
	l, err := s.kv.Grant(ctx, ttl, daemonPrefix(), v)
	if err != nil {
		return nil, err
	}
	s.member.lease.Store(l.ID())
	s.member.held.Store(&l)
	return l, nil
}

// Lease is this daemon's lease id, 0 before Join.
func (s *Store) Lease() int64 { return s.member.lease.Load() }

// Leave gives the lease up (a clean stop), so that the other daemons need
// not wait for it to expire.
func (s *Store) Leave(ctx context.Context) error {
	l := s.member.held.Load()
	if l == nil {
		return nil
	}
	s.member.lease.Store(0)
	return (*l).Revoke(ctx)
}

// Alive reports whether the daemon holding lease is alive: this daemon's
// own lease is, lease 0 (work from before leases, or a Store that never
// joined) never is.
func (s *Store) Alive(ctx context.Context, lease int64) (bool, error) {
	if lease == 0 {
		return false, nil
	}
	if lease == s.Lease() {
		return true, nil
	}
	return s.kv.Alive(ctx, lease)
}

// Daemons lists the daemons holding a lease on the catalogue now (this one
// included, once joined). Records left by daemons that are gone (badger
// keeps them after a crash) are removed on the way.
func (s *Store) Daemons(ctx context.Context) ([]Daemon, error) {
	type rec struct {
		key []byte
		d   Daemon
	}
	var recs []rec
	err := s.kv.View(ctx, func(tx kv.Txn) error {
		return tx.Scan(daemonPrefix(), func(k, v []byte) error {
			var d Daemon
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("daemon record %s: %w", k, err)
			}
			d.Lease = kv.LeaseOfKey(daemonPrefix(), k)
			recs = append(recs, rec{key: append([]byte(nil), k...), d: d})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list daemons: %w", err)
	}
	var live []Daemon
	for _, r := range recs {
		alive, err := s.kv.Alive(ctx, r.d.Lease)
		if err != nil {
			return nil, fmt.Errorf("list daemons: %w", err)
		}
		if alive {
			live = append(live, r.d)
			continue
		}
		if _, err := s.kv.Update(ctx, func(tx kv.Txn) error { return tx.Delete(r.key) }); err != nil && !errors.Is(err, kv.ErrNotFound) {
			return nil, fmt.Errorf("remove the record of a gone daemon: %w", err)
		}
	}
	return live, nil
}

// stampWriter keeps img.WriterLease right for a write by this daemon: work
// that starts (the image enters a status in flight, or a background hash)
// is stamped with this daemon's lease unless fn set another; work that
// ends clears it.
func (s *Store) stampWriter(old, img *Image) {
	working := img.Status.InFlight() || img.HashPending
	wasWorking := old != nil && (old.Status.InFlight() || old.HashPending)
	switch {
	case !working:
		img.WriterLease = 0
	case !wasWorking && (old == nil || img.WriterLease == old.WriterLease):
		img.WriterLease = s.Lease()
	}
}
