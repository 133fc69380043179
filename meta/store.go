// Package meta is the registry: image records, their statuses and the legal
// moves between them, and the queries the two faces need. It keeps its
// records on the transactional key-value layer of package kv (the key schema
// is in keys.go) and publishes every committed change as an Event.
package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/glimpse-project/glimpse/meta/kv"
)

var (
	// ErrNotFound: no image has that id.
	ErrNotFound = errors.New("image not found")
	// ErrExists: an image with that id already exists.
	ErrExists = errors.New("image already exists")
	// ErrIllegalMove: the status change is not allowed by the state machine.
	ErrIllegalMove = errors.New("illegal status change")
	// ErrRecordTooLarge: the image's record would exceed MaxRecordBytes.
	ErrRecordTooLarge = errors.New("image record too large")
	// ErrUnavailable: the registry cannot be reached now (etcd without a
	// quorum, or this daemon cut off from it); the same call may succeed
	// later. A write that failed so may or may not have been made.
	ErrUnavailable = kv.ErrUnavailable
)

// MaxRecordBytes bounds one image's record (its JSON: every property, tag
// and location), the same on every engine, so that a catalogue that works
// on badger works on etcd: half of what one registry transaction may write
// (kv.MaxTxnBytes, under etcd's 1.5 MiB request limit), the rest being
// the indexes written with it.
const MaxRecordBytes = kv.MaxTxnBytes / 2

// Store is the image registry. It is safe for concurrent use.
type Store struct {
	kv     kv.KV
	now    func() time.Time
	feed   *feed
	member membership
	limit  atomic.Pointer[Limit]
}

// Option is an option of Open.
type Option func(*options)

type options struct{ log *slog.Logger }

// WithLogger sends the Store's own warnings (a slow or broken change feed)
// to log; the default discards them.
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// Open returns the registry kept on db, initialising an empty one, and
// starts following its change feed (stopped by Close, or when db closes).
func Open(db kv.KV, opts ...Option) (*Store, error) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Store{kv: db, now: func() time.Time { return time.Now().UTC() }}
	upgrade := false
	_, err := db.Update(context.Background(), func(tx kv.Txn) error {
		upgrade = false
		v, err := tx.Get(versionKey)
		switch {
		case errors.Is(err, kv.ErrNotFound):
			return tx.Set(versionKey, []byte(schemaVersion))
		case err != nil:
			return err
		case string(v) == "1":
			upgrade = true // usage not yet counted: counted below
			return nil
		case string(v) != schemaVersion:
			return fmt.Errorf("registry schema version %q, this glimpse reads %q", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	if upgrade {
		if err := s.countUsage(context.Background()); err != nil {
			return nil, fmt.Errorf("open registry: upgrade to schema %s: %w", schemaVersion, err)
		}
		o.log.Info("registry upgraded: usage counted per project", "schema", schemaVersion)
	}
	rev, err := s.revision(context.Background())
	if err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	s.startFeed(rev, o.log)
	return s, nil
}

// Create stores a new image. CreatedAt and UpdatedAt are set to now.
func (s *Store) Create(ctx context.Context, img *Image) (*Image, error) {
	if !img.Status.Valid() {
		return nil, fmt.Errorf("create image %s: invalid status %q", img.ID, img.Status)
	}
	img = img.Clone()
	s.stampWriter(nil, img)
	img.CreatedAt = s.now()
	img.UpdatedAt = img.CreatedAt
	create := func(tx kv.Txn) error {
		if _, err := tx.Get(imageKey(img.ID)); err == nil {
			return ErrExists
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		// A deleted image's members not yet swept (a daemon died in the
		// sweep) would be the new image's: they go first.
		if left, err := hasMembers(tx, img.ID); err != nil {
			return err
		} else if left {
			return errMembersLeft
		}
		if err := s.account(tx, nil, img); err != nil {
			return err
		}
		return putImage(tx, nil, img)
	}
	rev, err := s.kv.Update(commitContext(ctx), create)
	if errors.Is(err, errMembersLeft) {
		if err = s.sweepMembers(ctx, img.ID); err == nil {
			rev, err = s.kv.Update(commitContext(ctx), create)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create image %s: %w", img.ID, err)
	}
	s.await(ctx, rev)
	return img, nil
}

// commitContext is the context of a change's transaction: ctx's values,
// not its cancellation. The callers' contexts are often those of requests
// that may end meanwhile (a FUSE request interrupted, a REST client gone),
// and a change they started, above all the kill of a failed upload, must
// still be made or refused whole; the engine bounds how long it may take
// (etcd's request timeout).
func commitContext(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// Get returns the image with the id.
func (s *Store) Get(id string) (*Image, error) {
	var img *Image
	err := s.kv.View(context.Background(), func(tx kv.Txn) error {
		var err error
		img, err = getImage(tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	return img, nil
}

// GetMany returns the images with the ids, in one read transaction: imgs[i]
// is ids[i]'s record, nil where there is none.
func (s *Store) GetMany(ids []string) ([]*Image, error) {
	imgs := make([]*Image, len(ids))
	keys := make([][]byte, len(ids))
	for i, id := range ids {
		keys[i] = imageKey(id)
	}
	// One batch read: on etcd a read per record is a round trip to the
	// leader each, and a status directory's listing reads 128 at a time.
	err := s.kv.View(context.Background(), func(tx kv.Txn) error {
		vals, err := tx.GetMany(keys)
		if err != nil {
			return err
		}
		for i, v := range vals {
			if v == nil {
				continue
			}
			if imgs[i], err = decode(v); err != nil {
				return fmt.Errorf("image %s: %w", ids[i], err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return imgs, nil
}

// Update applies fn to the current record of image id and stores the result
// atomically, keeping the indexes and UpdatedAt right and refusing status
// changes the state machine forbids. fn may run more than once (on a
// conflict) and must only change the image it is given. An error from fn
// aborts the update and is returned as is.
func (s *Store) Update(ctx context.Context, id string, fn func(*Image) error) (*Image, error) {
	var old, img *Image
	rev, err := s.kv.Update(commitContext(ctx), func(tx kv.Txn) error {
		var err error
		old, err = getImage(tx, id)
		if err != nil {
			return err
		}
		img = old.Clone()
		if err := fn(img); err != nil {
			return err
		}
		if img.ID != old.ID {
			return fmt.Errorf("image id cannot change")
		}
		if !CanMove(old.Status, img.Status) {
			return fmt.Errorf("%w: %s to %s", ErrIllegalMove, old.Status, img.Status)
		}
		s.stampWriter(old, img)
		img.CreatedAt = old.CreatedAt
		img.UpdatedAt = s.now()
		if err := s.account(tx, old, img); err != nil {
			return err
		}
		return putImage(tx, old, img)
	})
	if err != nil {
		return nil, err
	}
	s.await(ctx, rev)
	return img, nil
}

// Delete removes the record of image id (and its members) and returns it. check, if not nil,
// sees the current record inside the same transaction and may refuse the
// deletion with an error, which is returned as is (so that a rule such as
// "protected images stay" cannot race with a concurrent update).
func (s *Store) Delete(ctx context.Context, id string, check func(*Image) error) (*Image, error) {
	var old *Image
	var more bool
	rev, err := s.kv.Update(commitContext(ctx), func(tx kv.Txn) error {
		var err error
		old, err = getImage(tx, id)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(old); err != nil {
				return err
			}
		}
		if err := s.account(tx, old, nil); err != nil {
			return err
		}
		more, err = deleteImage(tx, old)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete image %s: %w", id, err)
	}
	s.await(ctx, rev)
	if more {
		// The image is gone, so its remaining members see nothing; their
		// records go in further transactions.
		if err := s.sweepMembers(ctx, id); err != nil {
			return old, err
		}
	}
	return old, nil
}

// All calls fn for every image, in id order, stopping at fn's first error.
func (s *Store) All(fn func(*Image) error) error {
	_, err := s.Snapshot(fn)
	return err
}

// Snapshot is All, and returns the revision it read at: a subscriber that
// built its state from it applies the events after that revision (events
// at or before it may still arrive, and a badger snapshot may already show
// a few later ones, so apply them idempotently).
func (s *Store) Snapshot(fn func(*Image) error) (rev int64, err error) {
	err = s.kv.View(context.Background(), func(tx kv.Txn) error {
		var err error
		if rev, err = tx.Revision(); err != nil {
			return err
		}
		return tx.Scan(imagePrefix(), func(_, v []byte) error {
			img, err := decode(v)
			if err != nil {
				return err
			}
			return fn(img)
		})
	})
	return rev, err
}

// InStatus returns the ids of every image in status st.
func (s *Store) InStatus(st Status) ([]string, error) {
	var ids []string
	prefix := statusPrefix(st)
	err := s.kv.View(context.Background(), func(tx kv.Txn) error {
		return tx.Scan(prefix, func(k, _ []byte) error {
			ids = append(ids, string(k[len(prefix):]))
			return nil
		})
	})
	return ids, err
}

// Working returns the ids of the images whose work in flight (an upload,
// an import, a background hash) a daemon's lease owns: a short list to
// watch for work whose daemon is gone, whatever the catalogue's size.
func (s *Store) Working() ([]string, error) {
	var ids []string
	prefix := workPrefix()
	err := s.kv.View(context.Background(), func(tx kv.Txn) error {
		return tx.Scan(prefix, func(k, _ []byte) error {
			ids = append(ids, string(k[len(prefix):]))
			return nil
		})
	})
	return ids, err
}

// Entry is one image in a status directory.
type Entry struct {
	Name string
	ID   string
}

// Names calls fn for every image with a listable name in status st, sorted
// by name (images sharing a name are adjacent, by id).
func (s *Store) Names(st Status, fn func(Entry) error) error {
	prefix := namePrefix(st, "", false)
	return s.kv.View(context.Background(), func(tx kv.Txn) error {
		return tx.Scan(prefix, func(k, _ []byte) error {
			name, id := splitNameKey(prefix, k)
			return fn(Entry{Name: name, ID: id})
		})
	})
}

// Named returns the ids of the images in status st whose name is name.
func (s *Store) Named(st Status, name string) ([]string, error) {
	var ids []string
	prefix := namePrefix(st, name, true)
	err := s.kv.View(context.Background(), func(tx kv.Txn) error {
		return tx.Scan(prefix, func(k, _ []byte) error {
			ids = append(ids, string(k[len(prefix):]))
			return nil
		})
	})
	return ids, err
}

func getImage(tx kv.Txn, id string) (*Image, error) {
	v, err := tx.Get(imageKey(id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return decode(v)
}

func decode(v []byte) (*Image, error) {
	var img Image
	if err := json.Unmarshal(v, &img); err != nil {
		return nil, fmt.Errorf("decode image record: %w", err)
	}
	return &img, nil
}

// putImage writes img and moves its index entries from those of old (nil
// for a new image).
func putImage(tx kv.Txn, old, img *Image) error {
	if old != nil {
		if err := deleteIndexes(tx, old); err != nil {
			return err
		}
	}
	v, err := json.Marshal(img)
	if err != nil {
		return err
	}
	if len(v) > MaxRecordBytes {
		return fmt.Errorf("%w: %d bytes, at most %d: use fewer or shorter properties", ErrRecordTooLarge, len(v), MaxRecordBytes)
	}
	if err := tx.Set(imageKey(img.ID), v); err != nil {
		return err
	}
	if err := tx.Set(statusKey(img.Status, img.ID), nil); err != nil {
		return err
	}
	if img.WriterLease != 0 {
		if err := tx.Set(workKey(img.ID), nil); err != nil {
			return err
		}
	}
	if Listable(img.Name) {
		return tx.Set(nameKey(img.Status, img.Name, img.ID), nil)
	}
	return nil
}

// deleteImage removes img's record, its index entries and its members.
// deleteImage removes img's record, its indexes and (up to membersPerTxn
// of) its members; more says members are left for sweepMembers.
func deleteImage(tx kv.Txn, img *Image) (more bool, err error) {
	if err := deleteIndexes(tx, img); err != nil {
		return false, err
	}
	if more, err = deleteMembers(tx, img.ID); err != nil {
		return false, err
	}
	return more, tx.Delete(imageKey(img.ID))
}

func deleteIndexes(tx kv.Txn, img *Image) error {
	if err := tx.Delete(statusKey(img.Status, img.ID)); err != nil {
		return err
	}
	if img.WriterLease != 0 {
		if err := tx.Delete(workKey(img.ID)); err != nil {
			return err
		}
	}
	if Listable(img.Name) {
		return tx.Delete(nameKey(img.Status, img.Name, img.ID))
	}
	return nil
}
