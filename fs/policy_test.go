package fs

import (
	"context"
	"os"
	"syscall"
	"testing"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/lifecycletest"
)

// A mount that acts as a project (--fs-project p1) follows Glance's
// rules: p1's members deactivate and reactivate p1's images with mv, not
// another project's public one; deactivated content is unreadable.
func TestProjectMountDeactivatesItsOwn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	env := lifecycletest.New(t, lifecycle.Config{})
	mnt := t.TempDir()
	srv, err := Mount(mnt, env.Service, Options{Principal: lifecycle.Principal{Project: "p1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount() })
	e := testEnv{mnt: mnt, svc: env.Service, store: env.Store, be: env.Backend, srv: srv}
	if err := os.WriteFile(e.path("active", "mine"), []byte("p1's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := e.xattr(t, e.path("active", "mine"), "owner"); got != "p1" {
		t.Fatalf("owner of an image the p1 mount made: %q", got)
	}
	ctx := context.Background()
	theirs, err := env.Service.Create(ctx, lifecycletest.Admin, lifecycle.CreateSpec{Name: "theirs", Owner: "p2", Visibility: "public"})
	if err != nil {
		t.Fatal(err)
	}
	up, err := env.Service.BeginUpload(ctx, lifecycletest.Admin, theirs.ID)
	if err != nil {
		t.Fatal(err)
	}
	up.Write([]byte("p2's"))
	if _, err := up.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	if err := os.Rename(e.path("active", "mine"), e.path("deactivated", "mine")); err != nil {
		t.Fatalf("p1 deactivating its own image: %v", err)
	}
	_, err = os.ReadFile(e.path("deactivated", "mine"))
	wantErrno(t, "reading deactivated content", err, syscall.EACCES)
	if err := os.Rename(e.path("deactivated", "mine"), e.path("active", "mine")); err != nil {
		t.Fatalf("p1 reactivating its own image: %v", err)
	}
	if b, err := os.ReadFile(e.path("active", "theirs")); err != nil || string(b) != "p2's" {
		t.Fatalf("p1 reading p2's public image: %q %v", b, err)
	}
	err = os.Rename(e.path("active", "theirs"), e.path("deactivated", "theirs"))
	wantErrno(t, "p1 deactivating p2's public image", err, syscall.EPERM)
}
