package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/glimpse-project/glimpse/meta/kv"
)

// Usage is what one project holds, counted in the registry (key
// u/<project>) in the same transaction as every change to its images, so
// that every daemon sharing the catalogue sees the same figures and a
// quota can be enforced exactly across them (see Limit).
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

func getUsage(tx kv.Txn, project string) (Usage, error) {
	v, err := tx.Get(usageKey(project))
	if errors.Is(err, kv.ErrNotFound) {
		return Usage{}, nil
	}
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	if err := json.Unmarshal(v, &u); err != nil {
		return Usage{}, fmt.Errorf("decode usage of project %s: %w", project, err)
	}
	return u, nil
}

func putUsage(tx kv.Txn, project string, u Usage) error {
	if u == (Usage{}) {
		return tx.Delete(usageKey(project))
	}
	v, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return tx.Set(usageKey(project), v)
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
	for _, p := range projects {
		before, err := getUsage(tx, p)
		if err != nil {
			return err
		}
		after := before.add(deltas[p], 1)
		if limit != nil && before.growsTo(after) {
			if err := limit(p, before, after); err != nil {
				return err
			}
		}
		if err := putUsage(tx, p, after); err != nil {
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
				if err := putUsage(tx, p, byProject[p]); err != nil {
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
