package lifecycle

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/local"
	"github.com/glimpse-project/glimpse/meta"
	"github.com/glimpse-project/glimpse/meta/kv"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
)

var admin = Principal{Project: "admin", Admin: true}

type env struct {
	svc   *Service
	store *meta.Store
	be    *local.Local
	db    kv.KV
}

func newEnv(t testing.TB) env {
	t.Helper()
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
	return env{svc: New(Config{Store: store, Backend: be}), store: store, be: be, db: db}
}

func random(t *testing.T, n int) []byte {
	p := make([]byte, n)
	rand.Read(p)
	return p
}

func (e env) create(t *testing.T, name string) *meta.Image {
	t.Helper()
	img, err := e.svc.Create(context.Background(), admin, CreateSpec{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// upload creates an image and uploads data into it in one write.
func (e env) upload(t *testing.T, name string, data []byte) *meta.Image {
	t.Helper()
	img := e.create(t, name)
	up, err := e.svc.BeginUpload(context.Background(), admin, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write(data); err != nil {
		t.Fatal(err)
	}
	done, err := up.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return done
}

func (e env) objects(t *testing.T) []string {
	var keys []string
	e.be.List(context.Background(), func(i backend.Info) error { keys = append(keys, i.Key); return nil })
	return keys
}

func checkActive(t *testing.T, img *meta.Image, data []byte) {
	t.Helper()
	m := md5.Sum(data)
	s := sha512.Sum512(data)
	if img.Status != meta.Active || *img.Size != int64(len(data)) || img.Checksum != hex.EncodeToString(m[:]) ||
		img.OSHashAlgo != "sha512" || img.OSHashValue != hex.EncodeToString(s[:]) || img.ContainerFormat != "bare" {
		t.Fatalf("image not active with the right size and hashes: %+v", img)
	}
}

func TestUploadInOrder(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := e.create(t, "disk")
	up, err := e.svc.BeginUpload(ctx, admin, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := e.store.Get(img.ID); got.Status != meta.Saving {
		t.Fatalf("status during upload: %s", got.Status)
	}
	data := random(t, 3<<20+17)
	for off := 0; off < len(data); off += 128 << 10 {
		end := min(off+128<<10, len(data))
		if _, err := up.Write(data[off:end]); err != nil {
			t.Fatal(err)
		}
	}
	done, err := up.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkActive(t, done, data)
	if done.DiskFormat != "raw" || *done.VirtualSize != int64(len(data)) {
		t.Fatalf("format %s virtual size %v", done.DiskFormat, *done.VirtualSize)
	}
	r, _, err := e.svc.Open(ctx, admin, img.ID, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make([]byte, len(data))
	r.ReadAt(got, 0)
	if !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
}

// Writes out of order, overlapping and with a hole (as cp --sparse and
// qemu-img write) still give the right hashes.
func TestUploadOutOfOrder(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := e.create(t, "sparse")
	up, err := e.svc.BeginUpload(ctx, admin, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	data := random(t, 1<<20)
	copy(data[300_000:600_000], make([]byte, 300_000)) // a hole, never written
	up.WriteAt(data[600_000:], 600_000)
	up.WriteAt(data[:100_000], 0)
	up.WriteAt(bytes.Repeat([]byte{0xff}, 50_000), 10_000) // overwritten below
	up.WriteAt(data[:300_000], 0)
	done, err := up.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkActive(t, done, data)
}

func TestTruncateDuringUpload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := e.create(t, "t")
	up, _ := e.svc.BeginUpload(ctx, admin, img.ID)
	data := random(t, 5000)
	up.Write(data)
	if err := up.Truncate(3000); err != nil {
		t.Fatal(err)
	}
	if err := up.Truncate(4000); err != nil {
		t.Fatal(err)
	}
	done, err := up.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, data[:3000]...), make([]byte, 1000)...)
	checkActive(t, done, want)
}

// qcow2Image is a minimal, empty qcow2 of 1 GiB (64 KiB clusters): the
// header, a refcount table and block, and an L1 table of two entries, each
// in its own cluster; with backing set, the header names a backing file.
func qcow2Image(backing bool) []byte {
	const cluster = 1 << 16
	h := make([]byte, 4*cluster)
	copy(h, "QFI\xfb")
	binary.BigEndian.PutUint32(h[4:], 2)
	if backing {
		binary.BigEndian.PutUint64(h[8:], 200) // backing_file_offset
		binary.BigEndian.PutUint32(h[16:], 8)  // backing_file_size
		copy(h[200:], "base.img")
	}
	binary.BigEndian.PutUint32(h[20:], 16)        // cluster_bits
	binary.BigEndian.PutUint64(h[24:], 1<<30)     // size
	binary.BigEndian.PutUint32(h[36:], 2)         // l1_size
	binary.BigEndian.PutUint64(h[40:], 3*cluster) // l1_table_offset
	binary.BigEndian.PutUint64(h[48:], cluster)   // refcount_table_offset
	binary.BigEndian.PutUint32(h[56:], 1)         // refcount_table_clusters
	binary.BigEndian.PutUint64(h[cluster:], 2*cluster)
	for i := 0; i < 4; i++ { // every cluster is used once (16-bit refcounts)
		binary.BigEndian.PutUint16(h[2*cluster+2*i:], 1)
	}
	return h
}

func TestUnsafeUploadIsKilledAndLeavesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := e.create(t, "evil.qcow2")
	up, _ := e.svc.BeginUpload(ctx, admin, img.ID)
	up.Write(qcow2Image(true))
	if _, err := up.Commit(ctx); err == nil {
		t.Fatal("a qcow2 with a backing file was accepted")
	}
	got, _ := e.store.Get(img.ID)
	if got.Status != meta.Killed || got.Error == "" || got.Size != nil || got.Checksum != "" {
		t.Fatalf("killed image: %+v", got)
	}
	if keys := e.objects(t); len(keys) != 0 {
		t.Fatalf("killed upload left content: %v", keys)
	}
}

func TestDeclaredFormatMustMatch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img, err := e.svc.Create(ctx, admin, CreateSpec{Name: "x", DiskFormat: "qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	up, _ := e.svc.BeginUpload(ctx, admin, img.ID)
	up.Write(random(t, 4096))
	if _, err := up.Commit(ctx); err == nil {
		t.Fatal("raw content declared qcow2 was accepted")
	}
	good, _ := e.svc.Create(ctx, admin, CreateSpec{Name: "y", DiskFormat: "qcow2"})
	up, _ = e.svc.BeginUpload(ctx, admin, good.ID)
	up.Write(qcow2Image(false))
	done, err := up.Commit(ctx)
	if err != nil || done.DiskFormat != "qcow2" || *done.VirtualSize != 1<<30 {
		t.Fatalf("qcow2: %+v %v", done, err)
	}
}

func TestSizeCap(t *testing.T) {
	e := newEnv(t)
	e.svc.maxSize = 1000
	ctx := context.Background()
	img := e.create(t, "big")
	up, _ := e.svc.BeginUpload(ctx, admin, img.ID)
	if _, err := up.Write(make([]byte, 1001)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("write over the cap: %v", err)
	}
	if _, err := up.Commit(ctx); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("commit after an over-cap write: %v", err)
	}
	if got, _ := e.store.Get(img.ID); got.Status != meta.Killed {
		t.Fatalf("status %s", got.Status)
	}
}

func TestUploadOnlyIntoQueued(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := e.create(t, "a")
	up, _ := e.svc.BeginUpload(ctx, admin, img.ID)
	if _, err := e.svc.BeginUpload(ctx, admin, img.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("second upload: %v", err)
	}
	up.Commit(ctx)
	if _, err := e.svc.BeginUpload(ctx, admin, img.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("upload into active: %v", err)
	}
}

func TestRecoverKillsInFlightAndRemovesOrphans(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	kept := e.upload(t, "kept", []byte("data"))

	// A writer that died mid-upload: the record says saving, the store has
	// a partial write.
	crashed := e.create(t, "crashed")
	if _, err := e.svc.BeginUpload(ctx, admin, crashed.ID); err != nil {
		t.Fatal(err)
	}
	// Content committed in the store but never recorded (crash between the
	// two), and content of an image long gone.
	for _, key := range []string{crashed.ID, NewID()} {
		w, _ := e.be.Create(ctx, key)
		w.Write([]byte("orphan"))
		w.Commit(ctx)
	}
	// A fresh service, as after a restart.
	svc := New(Config{Store: e.store, Backend: e.be})
	if err := svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := e.store.Get(crashed.ID)
	if got.Status != meta.Killed || got.Error == "" {
		t.Fatalf("crashed upload after recovery: %+v", got)
	}
	if keys := e.objects(t); len(keys) != 1 || keys[0] != kept.ID {
		t.Fatalf("store after recovery: %v, want only %s", keys, kept.ID)
	}
	if partial, _ := os.ReadDir(filepath.Join(e.be.Dir(), ".partial")); len(partial) != 0 {
		t.Fatalf("partial writes survive recovery: %d", len(partial))
	}
}

func TestDeleteRules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := e.upload(t, "p", []byte("x"))
	e.svc.Update(ctx, admin, img.ID, []Op{{Op: "replace", Key: "protected", Value: true}})
	if err := e.svc.Delete(ctx, admin, img.ID); !errors.Is(err, ErrProtected) {
		t.Fatalf("delete protected: %v", err)
	}
	other := Principal{Project: "p2"}
	if err := e.svc.Delete(ctx, other, img.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another project's shared image must be invisible: %v", err)
	}
	e.svc.Update(ctx, admin, img.ID, []Op{{Op: "replace", Key: "protected", Value: false}})
	if err := e.svc.Delete(ctx, admin, img.ID); err != nil {
		t.Fatal(err)
	}
	if keys := e.objects(t); len(keys) != 0 {
		t.Fatalf("delete left content: %v", keys)
	}
}

func TestDeleteDuringUpload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := e.create(t, "d")
	up, _ := e.svc.BeginUpload(ctx, admin, img.ID)
	up.Write([]byte("partial"))
	if err := e.svc.Delete(ctx, admin, img.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write([]byte("more")); !errors.Is(err, ErrUploadClosed) {
		t.Fatalf("write after delete: %v", err)
	}
	if _, err := e.store.Get(img.ID); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("record after delete: %v", err)
	}
}

func TestMoveRules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := e.upload(t, "m", nil)
	if _, err := e.svc.Move(ctx, admin, img.ID, "m", meta.Killed); !errors.Is(err, meta.ErrIllegalMove) {
		t.Fatalf("active to killed: %v", err)
	}
	// Glance's deactivate rule: the owner's members may, its readers not.
	reader := Principal{Project: "admin", ReadOnly: true}
	if _, err := e.svc.Move(ctx, reader, img.ID, "m", meta.Deactivated); !errors.Is(err, ErrForbidden) {
		t.Fatalf("reader deactivating: %v", err)
	}
	member := Principal{Project: "admin"} // the owner, but not an admin
	if got, err := e.svc.Move(ctx, member, img.ID, "m", meta.Deactivated); err != nil || got.Status != meta.Deactivated {
		t.Fatalf("the owner's member deactivating: %+v %v", got, err)
	}
	if got, err := e.svc.Move(ctx, member, img.ID, "m", meta.Active); err != nil || got.Status != meta.Active {
		t.Fatalf("the owner's member reactivating: %+v %v", got, err)
	}
	got, err := e.svc.Move(ctx, admin, img.ID, "m2", meta.Deactivated)
	if err != nil || got.Status != meta.Deactivated || got.Name != "m2" {
		t.Fatalf("deactivate and rename: %+v %v", got, err)
	}
	if _, _, err := e.svc.Open(ctx, admin, img.ID, OpenOptions{}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("reading deactivated content: %v", err)
	}
	if _, err := e.svc.Move(ctx, admin, img.ID, string(make([]byte, 300)), meta.Active); !errors.Is(err, ErrInvalid) {
		t.Fatalf("300-byte name: %v", err)
	}
	if got, _ := e.store.Get(img.ID); got.Status != meta.Deactivated || got.Name != "m2" {
		t.Fatalf("a refused move changed the image: %+v", got)
	}
}

func TestPropertyRules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	img := e.create(t, "props")
	for _, c := range []struct {
		op   Op
		want error
	}{
		{Op{"replace", "size", "5"}, ErrReadOnly},
		{Op{"replace", "status", "active"}, ErrReadOnly},
		{Op{"replace", "glimpse.error", "x"}, ErrReadOnly},
		{Op{"replace", "min_ram", "abc"}, ErrInvalid},
		{Op{"replace", "min_ram", int64(-1)}, ErrInvalid},
		{Op{"replace", "visibility", "everyone"}, ErrInvalid},
		{Op{"remove", "min_ram", nil}, ErrReadOnly},
		{Op{"remove", "nope", nil}, ErrNoProperty},
		{Op{"replace", "bad\x01key", "v"}, ErrInvalid},
		{Op{"replace", "min_ram", int64(512)}, nil},
		{Op{"add", "os_distro", "debian"}, nil},
		{Op{"replace", "tags", []any{"a", "b", "a"}}, nil},
	} {
		_, err := e.svc.Update(ctx, admin, img.ID, []Op{c.op})
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%+v: %v, want %v", c.op, err, c.want)
		}
	}
	got, _ := e.store.Get(img.ID)
	if got.MinRAM != 512 || got.Properties["os_distro"] != "debian" || len(got.Tags) != 2 {
		t.Fatalf("after updates: %+v", got)
	}
	if v, _ := Lookup(got, "tags"); v != "a,b" {
		t.Fatalf("tags text %q", v)
	}
	member := Principal{Project: "admin"}
	if _, err := e.svc.Update(ctx, member, img.ID, []Op{{"replace", "visibility", "public"}}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("member publicizing: %v", err)
	}
}
