package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/glimpse-project/glimpse/meta/kv"
)

// ErrTaskNotFound: no task has that id.
var ErrTaskNotFound = errors.New("task not found")

// Task is the registry's record of one task of Glance's tasks API (an
// import run in the background). It is stored as JSON (see keys.go).
type Task struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Status string `json:"status"`
	Owner  string `json:"owner"`
	// Input is the task's input as the caller gave it.
	Input map[string]any `json:"input"`
	// Result is set when the task succeeds ({"image_id": ...}).
	Result    map[string]any `json:"result"`
	Message   string         `json:"message"`
	ImageID   string         `json:"image_id,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
	UserID    string         `json:"user_id,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	// ExpiresAt is set when the task settles; past it the task is gone.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Lease is the registry lease of the daemon running the task (0: a
	// registry of one daemon's lifetime, badger): only a task whose daemon
	// is gone is another's to fail.
	Lease int64 `json:"lease,omitempty"`
}

// CreateTask stores a new task; CreatedAt and UpdatedAt are set to now.
func (s *Store) CreateTask(t *Task) (*Task, error) {
	t2 := *t
	t2.CreatedAt = s.now()
	t2.UpdatedAt = t2.CreatedAt
	_, err := s.kv.Update(context.Background(), func(tx kv.Txn) error {
		if _, err := tx.Get(taskKey(t2.ID)); err == nil {
			return fmt.Errorf("task %s already exists", t2.ID)
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		return putTask(tx, &t2)
	})
	if err != nil {
		return nil, fmt.Errorf("create task %s: %w", t.ID, err)
	}
	return &t2, nil
}

// GetTask returns the task with the id.
func (s *Store) GetTask(id string) (*Task, error) {
	var t *Task
	err := s.kv.View(context.Background(), func(tx kv.Txn) error {
		var err error
		t, err = getTask(tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", id, err)
	}
	return t, nil
}

// UpdateTask applies fn to the current record of task id and stores the
// result atomically, setting UpdatedAt. fn may run more than once.
func (s *Store) UpdateTask(id string, fn func(*Task) error) (*Task, error) {
	var t *Task
	_, err := s.kv.Update(context.Background(), func(tx kv.Txn) error {
		var err error
		if t, err = getTask(tx, id); err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
		t.ID = id
		t.UpdatedAt = s.now()
		return putTask(tx, t)
	})
	if err != nil {
		return nil, fmt.Errorf("update task %s: %w", id, err)
	}
	return t, nil
}

// DeleteTask removes task id; a missing task is not an error.
func (s *Store) DeleteTask(id string) error {
	_, err := s.kv.Update(context.Background(), func(tx kv.Txn) error { return tx.Delete(taskKey(id)) })
	return err
}

// Tasks calls fn for every task, in id order, stopping at fn's first error.
func (s *Store) Tasks(fn func(*Task) error) error {
	return s.kv.View(context.Background(), func(tx kv.Txn) error {
		return tx.Scan(taskPrefix(), func(_, v []byte) error {
			var t Task
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("decode task record: %w", err)
			}
			return fn(&t)
		})
	})
}

func getTask(tx kv.Txn, id string) (*Task, error) {
	v, err := tx.Get(taskKey(id))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, ErrTaskNotFound
	}
	if err != nil {
		return nil, err
	}
	var t Task
	if err := json.Unmarshal(v, &t); err != nil {
		return nil, fmt.Errorf("decode task record: %w", err)
	}
	return &t, nil
}

func putTask(tx kv.Txn, t *Task) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return tx.Set(taskKey(t.ID), v)
}
