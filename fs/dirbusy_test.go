package fs

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/local"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
)

// stallingCreates is a store whose Create waits until released, so that a
// FUSE create stays in flight, the kernel holding its directory's lock.
type stallingCreates struct {
	backend.Backend
	entered chan struct{}
	release chan struct{}
}

func (s *stallingCreates) Create(ctx context.Context, key string) (backend.Writer, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.Backend.Create(ctx, key)
}

// TestNoEntryNotificationUnderAHeldDirectoryLock: while a create in
// active/ waits for the daemon, a change made elsewhere to an image in
// active/ must not send the kernel an entry notification for active/:
// the notifying thread would wait in fuse_reverse_inval_entry for the
// lock the create holds, and a SIGKILL then would leave the mount hung.
// Once the create is answered, both changes show.
func TestNoEntryNotificationUnderAHeldDirectoryLock(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting and reading thread stacks need root")
	}
	if _, err := os.ReadFile("/proc/self/stack"); err != nil {
		t.Skipf("no kernel stacks: %v", err)
	}
	db, err := badgerkv.Open("", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := meta.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	be, err := local.Open(local.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	stall := &stallingCreates{Backend: be, entered: make(chan struct{}, 1), release: make(chan struct{})}
	svc := lifecycle.New(lifecycle.Config{Store: store, Backend: stall})
	mnt := t.TempDir()
	srv, err := Mount(mnt, svc, Options{Principal: admin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount() })
	ctx := context.Background()
	other, err := svc.Create(ctx, admin, lifecycle.CreateSpec{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	// Put it in active/ with no data: a queued image moves by upload only,
	// so give it one, the store's Create released for it.
	go func() { <-stall.entered; stall.release <- struct{}{} }()
	up, err := svc.BeginUpload(ctx, admin, other.ID)
	if err != nil {
		t.Fatal(err)
	}
	up.Write([]byte("x"))
	if _, err := up.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "active", "other")); err != nil {
		t.Fatal(err)
	}

	created := make(chan error, 1)
	go func() {
		f, err := os.Create(filepath.Join(mnt, "active", "new"))
		if err == nil {
			err = f.Close()
		}
		created <- err
	}()
	<-stall.entered // the create is in flight, active/ locked by the kernel
	renamed := make(chan error, 1)
	go func() {
		_, err := svc.Rename(ctx, admin, other.ID, "renamed")
		renamed <- err
	}()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if tid := threadIn("fuse_reverse_inval_entry"); tid != "" {
			stall.release <- struct{}{}
			t.Fatalf("thread %s waits in fuse_reverse_inval_entry for the lock the create holds", tid)
		}
	}
	stall.release <- struct{}{}
	if err := <-created; err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := <-renamed; err != nil {
		t.Fatalf("rename: %v", err)
	}
	srv.Settle()
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, errOld := os.Stat(filepath.Join(mnt, "active", "other"))
		_, errNew := os.Stat(filepath.Join(mnt, "active", "renamed"))
		if os.IsNotExist(errOld) && errNew == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the rename: other %v, renamed %v", errOld, errNew)
		}
	}
}

// threadIn returns a thread of this process whose kernel stack holds fn.
func threadIn(fn string) string {
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		stack, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "stack"))
		if err == nil && strings.Contains(string(stack), fn) {
			return task.Name()
		}
	}
	return ""
}
