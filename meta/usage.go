package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/glimpse-project/glimpse/meta/kv"
)

// Usage is what one project holds, counted in the registry in the same
// transaction as every change to its images, so that every daemon sharing
// the catalogue sees the same figures and a quota can be enforced exactly
// across them (see Limit). The count is kept in usageShards keys per
// project, each image's share in the one its id picks, so that concurrent
// changes to a project's images rarely touch the same key (on etcd every
// touch of a key another transaction wrote is a retry); the usage is their
// sum.
type Usage struct {
	Images    int64 `json:"images"`    // images the project owns, whatever their status
	Uploading int64 `json:"uploading"` // of those, in flight (saving, uploading, importing)
	Stored    int64 `json:"stored"`    // bytes of content the records hold (active, deactivated, staged)
}

// UsageOf is what one image adds to its owner's usage.
func UsageOf(img *Image) Usage {
	u := Usage{Images: 1}
	if img.Status.InFlight() {
		u.Uploading = 1
	}
	if img.Size != nil {
		u.Stored = *img.Size
	}
	return u
}

func (u Usage) add(v Usage, sign int64) Usage {
	return Usage{Images: u.Images + sign*v.Images, Uploading: u.Uploading + sign*v.Uploading, Stored: u.Stored + sign*v.Stored}
}

// growsTo reports whether after holds more than u in some respect.
func (u Usage) growsTo(after Usage) bool {
	return after.Images > u.Images || after.Uploading > u.Uploading || after.Stored > u.Stored
}

// Limit is asked, inside the transaction of every change that makes a
// project hold more, whether the project may go from before to after; an
// error refuses the change and is returned as is. It runs again when the
// transaction is retried, so it must only decide.
type Limit func(project string, before, after Usage) error

// SetLimit makes every later change of this Store ask fn (nil: none).
// Each daemon sets its own, so give them all the same.
func (s *Store) SetLimit(fn Limit) { s.limit.Store(&fn) }

// usageShards is how many keys hold one project's usage.
const usageShards = 32

// usageShard is the key of image id's share of project's usage.
func usageShard(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % usageShards)
}

// Usage is what project holds now.
func (s *Store) Usage(project string) (Usage, error) {
	var u Usage
	err := s.kv.View(context.Background(), func(tx kv.Txn) error {
		var err error
		u, err = getUsage(tx, project)
		return err
	})
	if err != nil {
		return Usage{}, fmt.Errorf("usage of project %s: %w", project, err)
	}
	return u, nil
}

// getUsage sums project's shards.
func getUsage(tx kv.Txn, project string) (Usage, error) {
	var u Usage
	err := tx.Scan(usagePrefix(project), func(k, v []byte) error {
		var shard Usage
		if err := json.Unmarshal(v, &shard); err != nil {
			return fmt.Errorf("decode usage %q: %w", k, err)
		}
		u = u.add(shard, 1)
		return nil
	})
	return u, err
}

// addUsage adds d to one shard of project's usage.
func addUsage(tx kv.Txn, project string, shard int, d Usage) error {
	key := usageKey(project, shard)
	var u Usage
	v, err := tx.Get(key)
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("decode usage %q: %w", key, err)
		}
	}
	u = u.add(d, 1)
	if u == (Usage{}) {
		return tx.Delete(key)
	}
	if v, err = json.Marshal(u); err != nil {
		return err
	}
	return tx.Set(key, v)
}

// account moves the usage of the change from old to img (either nil) in
// tx, asking the limit for every project that comes to hold more. A
// change that leaves usage as it was (a property, a name) touches no
// counter, so such writes never conflict on one.
func (s *Store) account(tx kv.Txn, old, img *Image) error {
	deltas := map[string]Usage{}
	if old != nil {
		deltas[old.Owner] = deltas[old.Owner].add(UsageOf(old), -1)
	}
	if img != nil {
		deltas[img.Owner] = deltas[img.Owner].add(UsageOf(img), 1)
	}
	projects := make([]string, 0, len(deltas))
	for p, d := range deltas {
		if d != (Usage{}) {
			projects = append(projects, p)
		}
	}
	sort.Strings(projects)
	var limit Limit
	if l := s.limit.Load(); l != nil {
		limit = *l
	}
	id := ""
	if img != nil {
		id = img.ID
	} else {
		id = old.ID
	}
	for _, p := range projects {
		d := deltas[p]
		// Only a change that adds, with a limit, reads the whole count:
		// that read makes concurrent additions to the project take turns,
		// which exactness needs.
		if limit != nil && (Usage{}).growsTo(d) {
			before, err := getUsage(tx, p)
			if err != nil {
				return err
			}
			if err := limit(p, before, before.add(d, 1)); err != nil {
				return err
			}
		}
		if err := addUsage(tx, p, usageShard(id), d); err != nil {
			return err
		}
	}
	return nil
}

// countUsage rebuilds every project's usage from the records: the upgrade
// of a registry written before usage was counted (schema 1).
func (s *Store) countUsage(ctx context.Context) error {
	byProject := map[string]Usage{}
	if _, err := s.Snapshot(func(img *Image) error {
		byProject[img.Owner] = byProject[img.Owner].add(UsageOf(img), 1)
		return nil
	}); err != nil {
		return err
	}
	projects := make([]string, 0, len(byProject))
	for p := range byProject {
		projects = append(projects, p)
	}
	sort.Strings(projects)
	// In batches that fit a transaction; the schema version moves with
	// the last one.
	for len(projects) >= 0 {
		n := min(len(projects), kv.MaxTxnOps-1)
		batch := projects[:n]
		last := n == len(projects)
		if _, err := s.kv.Update(ctx, func(tx kv.Txn) error {
			for _, p := range batch {
				if err := addUsage(tx, p, 0, byProject[p]); err != nil {
					return err
				}
			}
			if last {
				return tx.Set(versionKey, []byte(schemaVersion))
			}
			return nil
		}); err != nil {
			return err
		}
		if last {
			return nil
		}
		projects = projects[n:]
	}
	return nil
}
