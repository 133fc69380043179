package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

// imageClient builds a gophercloud image client without Keystone, as the
// reference notes show.
func imageClient(url, token string) *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{}
	pc.SetToken(token)
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: url + "/", ResourceBase: url + "/v2/", Type: "image"}
}

func statusCode(err error) int {
	var e gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &e) {
		return e.Actual
	}
	return 0
}

func TestGophercloud(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := serveInProcess(t, serveOptions{})
	c := imageClient(url, "T")

	hidden := false
	img, err := images.Create(ctx, c, images.CreateOpts{
		Name: "gc-image", DiskFormat: "raw", ContainerFormat: "bare", Hidden: &hidden,
		Tags: []string{"a"}, MinRAM: 64, Properties: map[string]string{"os_distro": "cirros"},
	}).Extract()
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if img.Status != images.ImageStatusQueued || img.Properties["os_distro"] != "cirros" || img.MinRAMMegabytes != 64 {
		t.Fatalf("created image: %+v", img)
	}
	if img.CreatedAt.IsZero() {
		t.Fatal("created_at did not parse")
	}

	data := make([]byte, 5<<20+3)
	rand.Read(data)
	// An *os.File body is sent chunked, as gophercloud users do.
	f := filepath.Join(t.TempDir(), "disk.raw")
	os.WriteFile(f, data, 0o644)
	fh, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := imagedata.Upload(ctx, c, img.ID, fh).ExtractErr(); err != nil {
		t.Fatalf("upload: %v", err)
	}
	got, err := images.Get(ctx, c, img.ID).Extract()
	if err != nil || got.Status != images.ImageStatusActive || got.SizeBytes != int64(len(data)) {
		t.Fatalf("after upload: %+v, %v", got, err)
	}

	rc, err := imagedata.Download(ctx, c, img.ID).Extract()
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	back, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("download: %d bytes, %v; content differs", len(back), err)
	}

	updated, err := images.Update(ctx, c, img.ID, images.UpdateOpts{
		images.ReplaceImageName{NewName: "gc-renamed"},
		images.ReplaceImageMinDisk{NewMinDisk: 3},
		images.UpdateImageProperty{Op: images.AddOp, Name: "hw_disk_bus", Value: "scsi"},
		images.UpdateImageProperty{Op: images.RemoveOp, Name: "os_distro"},
	}).Extract()
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if updated.Name != "gc-renamed" || updated.MinDiskGigabytes != 3 || updated.Properties["hw_disk_bus"] != "scsi" || updated.Properties["os_distro"] != nil {
		t.Fatalf("updated: %+v", updated)
	}
	// replace of a property the image lacks is 409, as in Glance.
	_, err = images.Update(ctx, c, img.ID, images.UpdateOpts{images.UpdateImageProperty{Op: images.ReplaceOp, Name: "nope", Value: "x"}}).Extract()
	if statusCode(err) != http.StatusConflict {
		t.Fatalf("replace of a missing property: %v, want 409", err)
	}

	// Paging: 7 images, pages of 3, all seen once, in name order.
	for i := 0; i < 6; i++ {
		if _, err := images.Create(ctx, c, images.CreateOpts{Name: fmt.Sprintf("page-%d", i)}).Extract(); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	pages := 0
	err = images.List(c, images.ListOpts{Limit: 3, SortKey: "name", SortDir: "asc"}).EachPage(ctx, func(ctx context.Context, p pagination.Page) (bool, error) {
		pages++
		list, err := images.ExtractImages(p)
		for _, im := range list {
			names = append(names, im.Name)
		}
		return true, err
	})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	want := "[gc-renamed page-0 page-1 page-2 page-3 page-4 page-5]"
	if fmt.Sprint(names) != want || pages < 3 {
		t.Fatalf("paged list: %v in %d pages, want %s", names, pages, want)
	}
	filtered, err := images.List(c, images.ListOpts{Name: "in:page-1,page-4", SortKey: "name", SortDir: "asc"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := images.ExtractImages(filtered); len(list) != 2 {
		t.Fatalf("in: filter: %d images", len(list))
	}

	// glance-direct: stage, then import.
	staged, err := images.Create(ctx, c, images.CreateOpts{Name: "staged", DiskFormat: "raw", ContainerFormat: "bare"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(staged.OpenStackImageImportMethods, ","), "glance-direct") {
		t.Fatalf("import methods header: %v", staged.OpenStackImageImportMethods)
	}
	if methods, err := imageimport.Get(ctx, c).Extract(); err != nil || !strings.Contains(fmt.Sprint(methods.ImportMethods.Value), "glance-direct") {
		t.Fatalf("import info: %+v, %v", methods, err)
	}
	if err := imagedata.Stage(ctx, c, staged.ID, bytes.NewReader(data[:4096])).ExtractErr(); err != nil {
		t.Fatalf("stage: %v", err)
	}
	if err := imageimport.Create(ctx, c, staged.ID, imageimport.CreateOpts{Name: imageimport.GlanceDirectMethod}).ExtractErr(); err != nil {
		t.Fatalf("import: %v", err)
	}
	if got, err := images.Get(ctx, c, staged.ID).Extract(); err != nil || got.Status != images.ImageStatusActive || got.SizeBytes != 4096 {
		t.Fatalf("after glance-direct: %+v, %v", got, err)
	}

	if err := images.Delete(ctx, c, img.ID).ExtractErr(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := images.Get(ctx, c, img.ID).Extract(); statusCode(err) != http.StatusNotFound {
		t.Fatalf("get after delete: %v, want 404", err)
	}
}

func TestGophercloudAuth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {
		"adm": {"project": "ops", "roles": ["admin"]},
		"m1": {"project": "p1", "roles": ["member"]},
		"m2": {"project": "p2", "roles": ["member"]},
		"r1": {"project": "p1", "roles": ["reader"]}}}`), 0o600)
	url := serveInProcess(t, serveOptions{authTokens: tokens})

	if _, err := images.List(imageClient(url, "wrong"), nil).AllPages(ctx); statusCode(err) != http.StatusUnauthorized {
		t.Fatalf("bad token: %v, want 401", err)
	}
	resp, err := http.Get(url + "/v2/images")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", resp.StatusCode)
	}

	m1, m2, adm, r1 := imageClient(url, "m1"), imageClient(url, "m2"), imageClient(url, "adm"), imageClient(url, "r1")
	private := images.ImageVisibilityPrivate
	img, err := images.Create(ctx, m1, images.CreateOpts{Name: "mine", Visibility: &private}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if img.Owner != "p1" {
		t.Fatalf("owner %q, want p1", img.Owner)
	}
	if _, err := images.Get(ctx, m2, img.ID).Extract(); statusCode(err) != http.StatusNotFound {
		t.Fatalf("other project's private image: %v, want 404", err)
	}
	if _, err := images.Get(ctx, r1, img.ID).Extract(); err != nil {
		t.Fatalf("reader of the owning project: %v", err)
	}
	if _, err := images.Update(ctx, r1, img.ID, images.UpdateOpts{images.ReplaceImageName{NewName: "x"}}).Extract(); statusCode(err) != http.StatusForbidden {
		t.Fatalf("reader update: %v, want 403", err)
	}
	all, _ := images.List(m2, nil).AllPages(ctx)
	if list, _ := images.ExtractImages(all); len(list) != 0 {
		t.Fatalf("p2 lists %d images, want 0", len(list))
	}
	public := images.ImageVisibilityPublic
	if _, err := images.Update(ctx, m1, img.ID, images.UpdateOpts{images.UpdateVisibility{Visibility: public}}).Extract(); statusCode(err) != http.StatusForbidden {
		t.Fatalf("member publicizes: %v, want 403", err)
	}
	if _, err := images.Create(ctx, m1, images.CreateOpts{Name: "pub", Visibility: &public}).Extract(); statusCode(err) != http.StatusForbidden {
		t.Fatalf("member creates public: %v, want 403", err)
	}
	if _, err := images.Update(ctx, adm, img.ID, images.UpdateOpts{images.UpdateVisibility{Visibility: public}}).Extract(); err != nil {
		t.Fatalf("admin publicizes: %v", err)
	}
	if _, err := images.Get(ctx, m2, img.ID).Extract(); err != nil {
		t.Fatalf("public image for another project: %v", err)
	}
	if _, err := images.Update(ctx, m2, img.ID, images.UpdateOpts{images.ReplaceImageName{NewName: "stolen"}}).Extract(); statusCode(err) != http.StatusForbidden {
		t.Fatalf("non-owner update: %v, want 403", err)
	}
	if _, err := images.Update(ctx, m1, img.ID, images.UpdateOpts{images.ReplaceImageProtected{NewProtected: true}}).Extract(); err != nil {
		t.Fatal(err)
	}
	if err := images.Delete(ctx, m1, img.ID).ExtractErr(); statusCode(err) != http.StatusForbidden {
		t.Fatalf("protected delete: %v, want 403", err)
	}
	if _, err := images.Update(ctx, m1, img.ID, images.UpdateOpts{images.ReplaceImageProtected{NewProtected: false}}).Extract(); err != nil {
		t.Fatal(err)
	}
	if err := images.Delete(ctx, m1, img.ID).ExtractErr(); err != nil {
		t.Fatalf("delete: %v", err)
	}
}
