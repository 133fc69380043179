package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/tasks"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

// imageOrigin serves payload at /disk.raw on loopback (the daemon runs
// with --web-download-allow-private).
func imageOrigin(t *testing.T, payload []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/disk.raw" {
			http.NotFound(w, r)
			return
		}
		w.Write(payload)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/disk.raw"
}

// The tasks API through Debian's glanceclient: task-create of an import,
// task-show until it settles, task-list; the image it made is active.
func TestGlanceCLITasks(t *testing.T) {
	t.Parallel()
	url := serveInProcess(t, serveOptions{allowPrivate: true})
	g := newGlanceCLI(t, url, "any")
	payload := bytes.Repeat([]byte{0xa5}, 3<<20)
	from := imageOrigin(t, payload)

	out := g.must("task-create", "--type", "import", "--input",
		fmt.Sprintf(`{"import_from": %q, "import_from_format": "raw", "image_properties": {"name": "via-task", "container_format": "bare"}}`, from))
	id := field(t, out, "id")
	if field(t, out, "type") != "import" || field(t, out, "status") != "pending" {
		t.Fatalf("task-create:\n%s", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out = g.must("task-show", id)
		if st := field(t, out, "status"); st != "pending" && st != "processing" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task still running after 30s:\n%s", out)
		}
		<-time.After(100 * time.Millisecond)
	}
	if field(t, out, "status") != "success" || !strings.Contains(field(t, out, "result"), "image_id") {
		t.Fatalf("task-show:\n%s", out)
	}
	if list := g.must("task-list"); !strings.Contains(list, id) || !strings.Contains(list, "success") {
		t.Fatalf("task-list:\n%s", list)
	}
	if list := g.must("task-list", "--status", "failure", "--sort-key", "status", "--page-size", "1"); strings.Contains(list, id) {
		t.Fatalf("task-list --status failure shows the successful task:\n%s", list)
	}
	img := g.must("image-list", "--property-filter", "name=via-task")
	if !strings.Contains(img, "via-task") {
		t.Fatalf("image-list after the task:\n%s", img)
	}
}

// The tasks API through gophercloud's imageservice/v2/tasks: create, get,
// and a paged list.
func TestGophercloudTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := serveInProcess(t, serveOptions{allowPrivate: true})
	c := imageClient(url, "T")
	payload := bytes.Repeat([]byte{0x5a}, 1<<20)
	from := imageOrigin(t, payload)

	var ids []string
	for i := 0; i < 3; i++ {
		task, err := tasks.Create(ctx, c, tasks.CreateOpts{Type: "import", Input: map[string]any{
			"import_from": from, "import_from_format": "raw",
			"image_properties": map[string]any{"name": fmt.Sprintf("gc-task-%d", i), "container_format": "bare"},
		}}).Extract()
		if err != nil {
			t.Fatalf("create task: %v", err)
		}
		if task.Status != string(tasks.TaskStatusPending) || task.Type != "import" || task.CreatedAt.IsZero() {
			t.Fatalf("created task: %+v", task)
		}
		ids = append(ids, task.ID)
	}
	for _, id := range ids {
		deadline := time.Now().Add(30 * time.Second)
		for {
			task, err := tasks.Get(ctx, c, id).Extract()
			if err != nil {
				t.Fatalf("get task: %v", err)
			}
			if task.Status == string(tasks.TaskStatusSuccess) {
				imageID, _ := task.Result["image_id"].(string)
				img, err := images.Get(ctx, c, imageID).Extract()
				if err != nil || img.Status != images.ImageStatusActive || img.SizeBytes != int64(len(payload)) || task.ExpiresAt.IsZero() {
					t.Fatalf("task %+v: image %+v, %v", task, img, err)
				}
				break
			}
			if task.Status == string(tasks.TaskStatusFailure) || time.Now().After(deadline) {
				t.Fatalf("task: %+v", task)
			}
			<-time.After(50 * time.Millisecond)
		}
	}
	var listed []string
	pages := 0
	err := tasks.List(c, tasks.ListOpts{Limit: 1, SortDir: "asc", Status: tasks.TaskStatusSuccess}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		ts, err := tasks.ExtractTasks(p)
		for _, task := range ts {
			listed = append(listed, task.ID)
		}
		pages++
		return pages < 10, err
	})
	if err != nil || fmt.Sprint(listed) != fmt.Sprint(ids) {
		t.Fatalf("paged list (%d pages): %v, %v; want %v", pages, listed, err, ids)
	}
}
