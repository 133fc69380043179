package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

// Glance's tasks API (deprecated there in favour of image import, still
// called by older clients): a task of type "import" creates an image from
// input.image_properties and imports its content from input.import_from,
// through the same path as a web-download import. Tasks are records in
// the registry, so every daemon on it sees them and a restart keeps them.
//
// Tasks is its own type, beside Service: the rules for tasks (who may use
// them, their statuses, their expiry) are not the image lifecycle's.

// Task statuses, Glance's.
const (
	TaskPending    = "pending"
	TaskProcessing = "processing"
	TaskSuccess    = "success"
	TaskFailure    = "failure"
)

// TaskStatuses and TaskTypes are the values Glance accepts in filters.
var (
	TaskStatuses = []string{TaskPending, TaskProcessing, TaskSuccess, TaskFailure}
	TaskTypes    = []string{"import"}
)

// TaskSortKeys are the keys a task listing may be sorted by.
var TaskSortKeys = []string{"id", "type", "status", "owner", "created_at", "updated_at", "expires_at"}

// DefaultTaskTimeToLive is Glance's task_time_to_live (48 hours): how
// long a settled task is kept.
const DefaultTaskTimeToLive = 48 * time.Hour

// Fetch copies the content at u into up and commits it (the web-download
// import's fetch); an error says why the import failed, with up settled.
type Fetch func(ctx context.Context, up *Upload, u *url.URL) error

// TasksConfig holds what Tasks needs beside the image Service.
type TasksConfig struct {
	// TimeToLive: how long a settled task is kept; 0: DefaultTaskTimeToLive.
	TimeToLive time.Duration
	// Fetch runs an import task's download (the web-download fetch).
	Fetch  Fetch
	Logger *slog.Logger
}

// Tasks runs and keeps Glance's tasks.
type Tasks struct {
	svc   *Service
	store *meta.Store
	ttl   time.Duration
	fetch Fetch
	log   *slog.Logger

	ctx    context.Context // cancelled by Close: running tasks stop
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewTasks returns the tasks of svc's registry.
func NewTasks(svc *Service, cfg TasksConfig) *Tasks {
	t := &Tasks{svc: svc, store: svc.store, ttl: cfg.TimeToLive, fetch: cfg.Fetch, log: cfg.Logger}
	if t.ttl <= 0 {
		t.ttl = DefaultTaskTimeToLive
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t
}

// Close stops the running tasks and waits for them: each ends failed, and
// its image killed, as the import of a stopped daemon is.
func (t *Tasks) Close() {
	t.cancel()
	t.wg.Wait()
}

// APIAccess is Glance's "tasks_api_access" rule (default "role:admin"),
// checked by every call of the tasks API before anything else. Glance's
// get_task, get_tasks and add_task rules (default "rule:default", anyone)
// are checked after it by each call.
func (t *Tasks) APIAccess(p Principal) error {
	return t.authorize(p, policy.TasksAPIAccess)
}

// authorize checks rule for p, the task's owner being p's project as
// Glance's task target has it.
func (t *Tasks) authorize(p Principal, rule string) error {
	return t.svc.auth.Authorize(p, rule, policy.Target{"project_id": p.Project, "owner": p.Project})
}

// authorizeAll checks tasks_api_access and then rule.
func (t *Tasks) authorizeAll(p Principal, rule string) error {
	if err := t.APIAccess(p); err != nil {
		return err
	}
	return t.authorize(p, rule)
}

// ImportTask is what an import task does: create an image from Image and
// import its content from From.
type ImportTask struct {
	From *url.URL
	// Image is the new image, from input.image_properties; ImageErr, when
	// set, is why those properties cannot make an image: the task is
	// created and fails with it, as Glance's does.
	Image    CreateSpec
	ImageErr error
}

// CreateImport records a new import task for p (input as the caller gave
// it) and starts it; it returns the task as created (pending).
func (t *Tasks) CreateImport(ctx context.Context, p Principal, input map[string]any, job ImportTask, requestID string) (*meta.Task, error) {
	if err := t.authorizeAll(p, policy.AddTask); err != nil {
		return nil, err
	}
	task, err := t.store.CreateTask(&meta.Task{
		ID: NewID(), Type: "import", Status: TaskPending, Owner: p.Project,
		Input: input, RequestID: requestID, UserID: p.User, Lease: t.store.Lease(),
	})
	if err != nil {
		return nil, err
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.runImport(p, task.ID, job)
	}()
	return task, nil
}

func (t *Tasks) runImport(p Principal, id string, job ImportTask) {
	imageID, err := t.importImage(p, id, job)
	if err != nil {
		t.log.Warn("import task failed", "task", id, "image", imageID, "err", err)
		t.settle(id, TaskFailure, nil, err.Error())
		return
	}
	t.log.Info("import task done", "task", id, "image", imageID)
	t.settle(id, TaskSuccess, map[string]any{"image_id": imageID}, "")
}

// importImage is the task's work: the image created, moved to importing
// and fetched as web-download does. It returns the image's id (once there
// is one) and why it failed.
func (t *Tasks) importImage(p Principal, id string, job ImportTask) (string, error) {
	ctx := t.ctx
	if _, err := t.store.UpdateTask(id, func(task *meta.Task) error {
		task.Status = TaskProcessing
		return nil
	}); err != nil {
		return "", err
	}
	if job.ImageErr != nil {
		return "", job.ImageErr
	}
	img, err := t.svc.Create(ctx, p, job.Image)
	if err != nil {
		return "", fmt.Errorf("create the image: %w", err)
	}
	up, err := t.svc.BeginImport(ctx, p, img.ID)
	if err != nil {
		return img.ID, fmt.Errorf("import image %s: %w", img.ID, err)
	}
	if err := t.fetch(ctx, up, job.From); err != nil {
		return img.ID, err
	}
	return img.ID, nil
}

// settle ends task id with status, result and message, and starts its
// time to live.
func (t *Tasks) settle(id, status string, result map[string]any, message string) {
	expires := time.Now().UTC().Add(t.ttl)
	if _, err := t.store.UpdateTask(id, func(task *meta.Task) error {
		task.Status, task.Result, task.Message, task.ExpiresAt = status, result, message, &expires
		return nil
	}); err != nil {
		t.log.Error("recording the end of a task", "task", id, "err", err)
	}
}

// Recover fails the tasks that a stopped daemon left pending or
// processing (on a shared registry, only those whose daemon's lease is
// gone): their imports were killed by the image lifecycle's own recovery.
func (t *Tasks) Recover(ctx context.Context) error {
	var stuck []string
	if err := t.store.Tasks(func(task *meta.Task) error {
		if task.Status != TaskPending && task.Status != TaskProcessing {
			return nil
		}
		if task.Lease != 0 && task.Lease != t.store.Lease() {
			// On a shared registry another daemon may be running it.
			alive, err := t.store.Alive(ctx, task.Lease)
			if err != nil || alive {
				return err
			}
		}
		stuck = append(stuck, task.ID)
		return nil
	}); err != nil {
		return fmt.Errorf("recover tasks: %w", err)
	}
	for _, id := range stuck {
		t.settle(id, TaskFailure, nil, "interrupted: the daemon stopped before the task finished")
	}
	return nil
}

// expired reports whether task is past its time to live.
func expired(task *meta.Task, now time.Time) bool {
	return task.ExpiresAt != nil && now.After(*task.ExpiresAt)
}

// visibleTask: admins see every task, others their project's.
func (t *Tasks) visibleTask(p Principal, task *meta.Task) bool {
	return t.svc.auth.IsAdmin(p) || task.Owner == p.Project
}

// Get returns task id. A task past its time to live is gone (and removed).
func (t *Tasks) Get(ctx context.Context, p Principal, id string) (*meta.Task, error) {
	if err := t.authorizeAll(p, policy.GetTask); err != nil {
		return nil, err
	}
	task, err := t.store.GetTask(id)
	if errors.Is(err, meta.ErrTaskNotFound) || (err == nil && !t.visibleTask(p, task)) {
		return nil, fmt.Errorf("%w: could not find task %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	if expired(task, time.Now()) {
		t.store.DeleteTask(id)
		return nil, fmt.Errorf("%w: could not find task %s", ErrNotFound, id)
	}
	return task, nil
}

// TaskQuery selects and orders a page of tasks, as Glance's GET /v2/tasks.
type TaskQuery struct {
	Type, Status, Owner string // filters; empty: any
	SortKey             string // one of TaskSortKeys; empty: created_at
	Desc                bool
	Marker              string // the last task of the previous page
	Limit               int    // 0: no limit
}

// List returns a page of the tasks p may see that match q, and whether the
// page is full (so a further page may exist). Expired tasks are removed.
func (t *Tasks) List(ctx context.Context, p Principal, q TaskQuery) ([]*meta.Task, bool, error) {
	if err := t.authorizeAll(p, policy.GetTasks); err != nil {
		return nil, false, err
	}
	key := q.SortKey
	if key == "" {
		key = "created_at"
	}
	if !contains(TaskSortKeys, key) {
		return nil, false, fmt.Errorf("%w: unsupported sort key %s", ErrInvalid, key)
	}
	now := time.Now()
	var all, gone []*meta.Task
	var marker *meta.Task
	err := t.store.Tasks(func(task *meta.Task) error {
		if expired(task, now) {
			gone = append(gone, task)
			return nil
		}
		if !t.visibleTask(p, task) {
			return nil
		}
		if task.ID == q.Marker {
			marker = task
		}
		if (q.Type != "" && task.Type != q.Type) || (q.Status != "" && task.Status != q.Status) || (q.Owner != "" && task.Owner != q.Owner) {
			return nil
		}
		all = append(all, task)
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	for _, task := range gone {
		t.store.DeleteTask(task.ID)
	}
	if q.Marker != "" && marker == nil {
		return nil, false, fmt.Errorf("%w: could not find task %s", ErrInvalid, q.Marker)
	}
	less := func(a, b *meta.Task) bool {
		if c := strings.Compare(taskSortValue(a, key), taskSortValue(b, key)); c != 0 {
			return (c < 0) != q.Desc
		}
		// Ties in id order, in the same direction, so paging is stable.
		return (a.ID < b.ID) != q.Desc
	}
	sort.Slice(all, func(i, j int) bool { return less(all[i], all[j]) })
	if marker != nil {
		i := sort.Search(len(all), func(i int) bool { return less(marker, all[i]) })
		all = all[i:]
	}
	full := false
	if q.Limit > 0 && len(all) >= q.Limit {
		all, full = all[:q.Limit], true
	}
	return all, full, nil
}

// taskSortValue is task's value for key as a string that sorts as the
// value does (times in fixed-width RFC 3339).
func taskSortValue(task *meta.Task, key string) string {
	const fixed = "2006-01-02T15:04:05.000000000Z"
	switch key {
	case "id":
		return task.ID
	case "type":
		return task.Type
	case "status":
		return task.Status
	case "owner":
		return task.Owner
	case "updated_at":
		return task.UpdatedAt.UTC().Format(fixed)
	case "expires_at":
		if task.ExpiresAt == nil {
			return ""
		}
		return task.ExpiresAt.UTC().Format(fixed)
	}
	return task.CreatedAt.UTC().Format(fixed)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
