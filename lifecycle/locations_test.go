package lifecycle

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	httpstore "github.com/glimpse-project/glimpse/backend/http"
	"github.com/glimpse-project/glimpse/convert"
	"github.com/glimpse-project/glimpse/meta"
)

// newLocationEnv is newEnv with an HTTP location store; guarded applies
// the SSRF rules (which refuse the loopback origin).
func newLocationEnv(t *testing.T, guarded bool) env {
	t.Helper()
	e := newEnv(t)
	cfg := httpstore.Config{}
	if guarded {
		cfg.Client = httpstore.GuardedClient(false, 10*time.Second)
	}
	h, err := httpstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	e.svc = New(Config{Store: e.store, Backend: e.be, Locations: h})
	t.Cleanup(func() { e.svc.Shutdown(context.Background()) })
	return e
}

// waitHashed waits for the background hash of image id to settle and
// returns the image then.
func waitHashed(t *testing.T, e env, id string) *meta.Image {
	t.Helper()
	settled := make(chan struct{}, 1)
	cancel := e.svc.Subscribe(func(ev meta.Event) {
		if ev.New == nil || ev.New.ID == id && !ev.New.HashPending {
			select {
			case settled <- struct{}{}:
			default:
			}
		}
	})
	defer cancel()
	for {
		img, err := e.store.Get(id)
		if err != nil || !img.HashPending {
			return img
		}
		select {
		case <-settled:
		case <-time.After(30 * time.Second):
			t.Fatalf("image %s still hash_pending after 30s", id)
		}
	}
}

func readAll(t *testing.T, r backend.Reader) []byte {
	t.Helper()
	got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestLocationAddReadHashDelete(t *testing.T) {
	t.Parallel()
	e := newLocationEnv(t, false)
	o := backendtest.NewWebOrigin(t)
	data := random(t, 3<<20+17)
	url := o.Put("/disk.raw", data)
	ctx := context.Background()

	img := e.create(t, "remote")
	got, err := e.svc.AddLocation(ctx, admin, img.ID, meta.Location{URL: url, Metadata: map[string]any{"k": "v"}}, nil, LocationByPatch)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != meta.Active || *got.Size != int64(len(data)) || got.DiskFormat != "raw" || got.ContainerFormat != "bare" || got.StoreKey != "" {
		t.Fatalf("after AddLocation: %+v", got)
	}
	if got.Checksum != "" || !got.HashPending {
		t.Fatalf("hashes before the background pass: checksum %q pending %v", got.Checksum, got.HashPending)
	}
	img = waitHashed(t, e, img.ID)
	md := md5.Sum(data)
	sh := sha512.Sum512(data)
	if img.Checksum != hex.EncodeToString(md[:]) || img.OSHashAlgo != "sha512" || img.OSHashValue != hex.EncodeToString(sh[:]) || img.Status != meta.Active {
		t.Fatalf("after the background hash: %+v", img)
	}

	r, _, err := e.svc.Open(ctx, admin, img.ID, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, r), data) {
		t.Fatal("content read through the location differs")
	}
	r.Close()
	if n := o.FullGETs.Load(); n != 0 {
		t.Fatalf("%d GETs without Range", n)
	}

	// Nothing is in the store, and recovery leaves the image alone.
	if objs := e.objects(t); len(objs) != 0 {
		t.Fatalf("store holds %v", objs)
	}
	if err := e.svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if after, err := e.store.Get(img.ID); err != nil || after.Status != meta.Active || len(after.Locations) != 1 {
		t.Fatalf("after Recover: %+v, %v", after, err)
	}

	// The last location of an active image stays; only metadata changes.
	if _, err := e.svc.RemoveLocation(ctx, admin, img.ID, 0); !errors.Is(err, ErrForbidden) {
		t.Fatalf("remove the only location: %v", err)
	}
	if _, err := e.svc.ReplaceLocations(ctx, admin, img.ID, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("replace with none: %v", err)
	}
	if _, err := e.svc.ReplaceLocations(ctx, admin, img.ID, []meta.Location{{URL: o.URL + "/other.raw"}}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("replace with another URL: %v", err)
	}
	upd, err := e.svc.ReplaceLocations(ctx, admin, img.ID, []meta.Location{{URL: url, Metadata: map[string]any{"k": "w"}}})
	if err != nil || upd.Locations[0].Metadata["k"] != "w" {
		t.Fatalf("metadata update: %+v, %v", upd, err)
	}
	// A second location is refused: glimpse keeps one per image.
	if _, err := e.svc.AddLocation(ctx, admin, img.ID, meta.Location{URL: url}, nil, LocationByPatch); !errors.Is(err, ErrForbidden) {
		t.Fatalf("second location: %v", err)
	}

	if err := e.svc.Delete(ctx, admin, img.ID); err != nil {
		t.Fatal(err)
	}
	if o.Writes.Load() != 0 {
		t.Fatal("deleting the image sent a write to the origin")
	}
	if resp, err := http.Get(url); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("origin after delete: %v %v", resp, err)
	}
}

// The probe reads what the inspector asks for, never the whole file.
func TestLocationProbeIsRanged(t *testing.T) {
	t.Parallel()
	e := newLocationEnv(t, false)
	o := backendtest.NewWebOrigin(t)
	data := make([]byte, 64<<20)
	copy(data, qcow2Image(false))
	url := o.Put("/big.qcow2", data)
	img := e.create(t, "big")
	// Events are published before AddLocation starts the background hash:
	// the bytes served when the image turns active are the probe's.
	var probed atomic.Int64
	probed.Store(-1)
	cancel := e.svc.Subscribe(func(ev meta.Event) {
		if ev.New != nil && ev.New.ID == img.ID && ev.New.Status == meta.Active && probed.Load() < 0 {
			probed.Store(o.Served.Load())
		}
	})
	defer cancel()
	got, err := e.svc.AddLocation(context.Background(), admin, img.ID, meta.Location{URL: url}, nil, LocationByPatch)
	if err != nil {
		t.Fatal(err)
	}
	if got.DiskFormat != "qcow2" || *got.Size != int64(len(data)) {
		t.Fatalf("probe: %+v", got)
	}
	if n := probed.Load(); n < 0 || n > int64(len(data))/8 {
		t.Fatalf("the probe of a %d-byte image read %d bytes", len(data), n)
	}
	t.Logf("probe of %d bytes read %d", len(data), probed.Load())
	waitHashed(t, e, img.ID)
}

func TestLocationRefusals(t *testing.T) {
	t.Parallel()
	e := newLocationEnv(t, false)
	o := backendtest.NewWebOrigin(t)
	ctx := context.Background()
	unsafe := o.Put("/backing.qcow2", qcow2Image(true))
	raw := o.Put("/disk.raw", random(t, 1<<20))
	cases := []struct {
		name, url string
		spec      CreateSpec
		want      error
	}{
		{"404", o.URL + "/missing", CreateSpec{}, ErrInvalid},
		{"not http", "file:///etc/passwd", CreateSpec{}, ErrInvalid},
		{"unsafe qcow2", unsafe, CreateSpec{}, convert.ErrUnsafe},
		{"declared format contradicted", raw, CreateSpec{DiskFormat: "qcow2"}, convert.ErrUnsafe},
		{"too long", o.URL + "/" + strings.Repeat("a", 300), CreateSpec{}, ErrInvalid},
	}
	for _, c := range cases {
		img, err := e.svc.Create(ctx, admin, c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.AddLocation(ctx, admin, img.ID, meta.Location{URL: c.url}, nil, LocationByPatch); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		// Nothing changed: the image is still queued, ready for another try.
		if after, _ := e.store.Get(img.ID); after.Status != meta.Queued || after.Locations != nil {
			t.Errorf("%s: image after a refused location: %+v", c.name, after)
		}
	}
	// Only the owner or an admin adds locations.
	img := e.create(t, "theirs")
	other := Principal{Project: "p2"}
	if _, err := e.svc.Update(ctx, admin, img.ID, []Op{{Op: "replace", Key: "visibility", Value: "public"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AddLocation(ctx, other, img.ID, meta.Location{URL: raw}, nil, LocationByPatch); !errors.Is(err, ErrForbidden) {
		t.Fatalf("another project's location: %v", err)
	}
	// Bad validation data is refused before any request.
	bad := &ValidationData{OSHashAlgo: "md5", OSHashValue: strings.Repeat("0", 32)}
	if _, err := e.svc.AddLocation(ctx, admin, img.ID, meta.Location{URL: raw}, bad, LocationByPatch); !errors.Is(err, ErrInvalid) {
		t.Fatalf("validation_data with another algorithm: %v", err)
	}
}

func TestLocationPrivateAddressRefused(t *testing.T) {
	t.Parallel()
	e := newLocationEnv(t, true)
	o := backendtest.NewWebOrigin(t)
	url := o.Put("/disk.raw", random(t, 4096))
	img := e.create(t, "ssrf")
	_, err := e.svc.AddLocation(context.Background(), admin, img.ID, meta.Location{URL: url}, nil, LocationByPatch)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("loopback location: %v", err)
	}
	if o.Served.Load() != 0 {
		t.Fatal("the loopback origin was reached")
	}
}

func TestLocationValidationData(t *testing.T) {
	t.Parallel()
	e := newLocationEnv(t, false)
	o := backendtest.NewWebOrigin(t)
	ctx := context.Background()
	data := random(t, 1<<20)
	url := o.Put("/disk.raw", data)
	md := md5.Sum(data)
	sh := sha512.Sum512(data)

	good := e.create(t, "good")
	vd := &ValidationData{Checksum: hex.EncodeToString(md[:]), OSHashAlgo: "sha512", OSHashValue: hex.EncodeToString(sh[:])}
	img, err := e.svc.AddLocation(ctx, admin, good.ID, meta.Location{URL: url}, vd, LocationByPatch)
	if err != nil || img.Checksum != vd.Checksum || img.Status != meta.Importing {
		t.Fatalf("with validation data, before verification: %+v, %v", img, err)
	}
	if img = waitHashed(t, e, good.ID); img.Status != meta.Active || img.OSHashValue != vd.OSHashValue {
		t.Fatalf("verified: %+v", img)
	}

	liar := e.create(t, "liar")
	wrong := &ValidationData{Checksum: strings.Repeat("0", 32)}
	if _, err := e.svc.AddLocation(ctx, admin, liar.ID, meta.Location{URL: url}, wrong, LocationByPatch); err != nil {
		t.Fatal(err)
	}
	img = waitHashed(t, e, liar.ID)
	if img.Status != meta.Killed || !strings.Contains(img.Error, "does not match validation_data") || img.Locations != nil {
		t.Fatalf("mismatch: %+v", img)
	}
}

// A URL that goes away: reads fail with ErrStoreUnavailable, the image stays.
func TestLocationGoneLater(t *testing.T) {
	t.Parallel()
	e := newLocationEnv(t, false)
	o := backendtest.NewWebOrigin(t)
	ctx := context.Background()
	url := o.Put("/disk.raw", random(t, 1<<20))
	img := e.create(t, "gone")
	if _, err := e.svc.AddLocation(ctx, admin, img.ID, meta.Location{URL: url}, nil, LocationByPatch); err != nil {
		t.Fatal(err)
	}
	waitHashed(t, e, img.ID)
	o.Remove("/disk.raw")
	if _, _, err := e.svc.Open(ctx, admin, img.ID, OpenOptions{}); !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("open after the URL went away: %v", err)
	}
	if after, err := e.store.Get(img.ID); err != nil || after.Status != meta.Active {
		t.Fatalf("image after its URL went away: %+v, %v", after, err)
	}
}

// A hash interrupted by a stop resumes at the next start.
func TestLocationHashResumesAfterRestart(t *testing.T) {
	t.Parallel()
	e := newLocationEnv(t, false)
	o := backendtest.NewWebOrigin(t)
	ctx := context.Background()
	data := random(t, 1<<20)
	url := o.Put("/disk.raw", data)
	img := e.create(t, "resume")
	// As a daemon stopped mid-verification leaves it: importing (being
	// verified against validation data), hash pending. Recovery must not
	// kill it as an interrupted upload.
	size := int64(len(data))
	md := md5.Sum(data)
	_, err := e.store.Update(ctx, img.ID, func(img *meta.Image) error {
		img.Status, img.Size, img.DiskFormat, img.ContainerFormat = meta.Importing, &size, "raw", "bare"
		img.Locations = []meta.Location{{URL: url, Metadata: map[string]any{}}}
		img.Checksum = hex.EncodeToString(md[:])
		img.HashPending = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	sh := sha512.Sum512(data)
	if got := waitHashed(t, e, img.ID); got.Status != meta.Active || got.OSHashValue != hex.EncodeToString(sh[:]) {
		t.Fatalf("after Recover: %+v", got)
	}
}

// TestLocationWithoutRanges: a server that ignores Range (every GET sends
// the whole object with 200) is refused at location-add, with a reason
// that says so, and the image stays queued.
func TestLocationWithoutRanges(t *testing.T) {
	t.Parallel()
	e := newLocationEnv(t, false)
	data := random(t, 8<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		if r.Method == http.MethodGet {
			w.Write(data)
		}
	}))
	defer srv.Close()
	img := e.create(t, "unranged")
	_, err := e.svc.AddLocation(context.Background(), admin, img.ID, meta.Location{URL: srv.URL + "/disk.raw"}, nil, LocationByPatch)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "Range") {
		t.Fatalf("location on a server that ignores Range: %v", err)
	}
	if after, _ := e.store.Get(img.ID); after.Status != meta.Queued || after.Locations != nil {
		t.Fatalf("image after the refusal: %+v", after)
	}
}
