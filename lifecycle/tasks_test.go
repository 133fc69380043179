package lifecycle_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/lifecycletest"
	"github.com/glimpse-project/glimpse/meta"
)

// A task left pending or processing by a daemon that stopped is failed at
// the next start, with a message; settled tasks keep what they had.
func TestTasksRecoverFailsInterruptedTasks(t *testing.T) {
	env := lifecycletest.New(t, lifecycle.Config{})
	for _, task := range []*meta.Task{
		{ID: lifecycle.NewID(), Type: "import", Status: lifecycle.TaskProcessing, Owner: "admin"},
		{ID: lifecycle.NewID(), Type: "import", Status: lifecycle.TaskSuccess, Owner: "admin", Result: map[string]any{"image_id": "x"}},
	} {
		if _, err := env.Store.CreateTask(task); err != nil {
			t.Fatal(err)
		}
	}
	tasks := lifecycle.NewTasks(env.Service, lifecycle.TasksConfig{})
	defer tasks.Close()
	if err := tasks.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	all, _, err := tasks.List(context.Background(), lifecycletest.Admin, lifecycle.TaskQuery{SortKey: "status"})
	if err != nil || len(all) != 2 {
		t.Fatalf("list: %v %v", all, err)
	}
	if all[0].Status != lifecycle.TaskFailure || all[0].Message == "" || all[0].ExpiresAt == nil {
		t.Fatalf("interrupted task after recovery: %+v", all[0])
	}
	if all[1].Status != lifecycle.TaskSuccess || all[1].Result["image_id"] != "x" {
		t.Fatalf("settled task after recovery: %+v", all[1])
	}
}

// Close stops a running import: the task fails and its image is killed,
// never left importing.
func TestTasksCloseStopsRunningImports(t *testing.T) {
	env := lifecycletest.New(t, lifecycle.Config{})
	started := make(chan *lifecycle.Upload, 1)
	tasks := lifecycle.NewTasks(env.Service, lifecycle.TasksConfig{Fetch: func(ctx context.Context, up *lifecycle.Upload, u *url.URL) error {
		started <- up
		<-ctx.Done()
		up.Abort(context.Background(), "stopped")
		return ctx.Err()
	}})
	u, _ := url.Parse("http://example.com/disk.raw")
	task, err := tasks.CreateImport(context.Background(), lifecycletest.Admin, map[string]any{}, lifecycle.ImportTask{
		From: u, Image: lifecycle.CreateSpec{Name: "t", DiskFormat: "raw", ContainerFormat: "bare"},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	up := <-started
	tasks.Close()
	got, err := env.Store.GetTask(task.ID)
	if err != nil || got.Status != lifecycle.TaskFailure {
		t.Fatalf("task after Close: %+v %v", got, err)
	}
	if img, _ := env.Store.Get(up.ID()); img.Status != meta.Killed {
		t.Fatalf("image after Close: %s", img.Status)
	}
	// Non-admins may not use the tasks API (tasks_api_access).
	if _, err := tasks.Get(context.Background(), lifecycle.Principal{Project: "p1"}, task.ID); err == nil {
		t.Fatal("a member read a task")
	}
}
