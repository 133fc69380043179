package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/members"
)

// sharingTokens writes a token file: the owner p1, the consumer p2, p3.
func sharingTokens(t *testing.T) string {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {
		"owner": {"project": "p1", "roles": ["member"]},
		"consumer": {"project": "p2", "roles": ["member"]},
		"other": {"project": "p3", "roles": ["member"]}}}`), 0o600)
	return tokens
}

// restAs sends a request with token and returns the status and body.
func restAs(t *testing.T, url, token, method, path, ct string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url+path, body)
	req.Header.Set("X-Auth-Token", token)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// memberRow matches glance's Image ID / Member ID / Status row.
func memberRow(id, member, status string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(id) + ` +\| ` + regexp.QuoteMeta(member) + ` +\| ` + status + ` +\|$`)
}

// The real glance CLI shares an image from p1 to p2, who accepts it, and
// glimpse's own member commands print the same tables.
func TestMemberCommandsGlanceAndGlimpse(t *testing.T) {
	t.Parallel()
	url := serveInProcess(t, serveOptions{authTokens: sharingTokens(t)})
	owner := newGlanceCLI(t, url, "owner")
	consumer := newGlanceCLI(t, url, "consumer")

	id := field(t, owner.must("image-create", "--name", "to-share", "--disk-format", "raw", "--container-format", "bare"), "id")
	out := owner.must("member-create", id, "p2")
	if !memberRow(id, "p2", "pending").MatchString(out) || !strings.Contains(out, "| Image ID ") {
		t.Fatalf("glance member-create:\n%s", out)
	}
	if out := consumer.must("image-list"); strings.Contains(out, id) {
		t.Fatalf("pending image in p2's image-list:\n%s", out)
	}
	if out := consumer.must("image-list", "--member-status", "pending"); !strings.Contains(out, id) {
		t.Fatalf("image-list --member-status pending:\n%s", out)
	}
	// The owner cannot accept for its member.
	if out, errs, ok := owner.run("member-update", id, "p2", "accepted"); ok || !strings.Contains(out+errs, "403") {
		t.Fatalf("owner's member-update succeeded:\n%s%s", out, errs)
	}
	if out := consumer.must("member-update", id, "p2", "accepted"); !memberRow(id, "p2", "accepted").MatchString(out) {
		t.Fatalf("glance member-update:\n%s", out)
	}
	if out := consumer.must("image-list"); !strings.Contains(out, id) {
		t.Fatalf("accepted image not in p2's image-list:\n%s", out)
	}
	if out := consumer.must("image-list", "--member-status", "rejected"); strings.Contains(out, id) {
		t.Fatalf("image-list --member-status rejected:\n%s", out)
	}
	owner.must("member-create", id, "p3")
	out = owner.must("member-list", "--image-id", id)
	if !memberRow(id, "p2", "accepted").MatchString(out) || !memberRow(id, "p3", "pending").MatchString(out) {
		t.Fatalf("owner's member-list:\n%s", out)
	}
	if out := consumer.must("member-list", "--image-id", id); strings.Contains(out, "p3") || !strings.Contains(out, "p2") {
		t.Fatalf("a member lists others:\n%s", out)
	}
	owner.must("member-delete", id, "p3")

	// glimpse's commands, same tables.
	as := func(token string, args ...string) []string {
		return append([]string{"--os-image-url", url, "--os-auth-token", token}, args...)
	}
	if out := mustGlimpse(t, as("owner", "member-list", "--image-id", id)...); !memberRow(id, "p2", "accepted").MatchString(out) || strings.Contains(out, "p3") {
		t.Fatalf("glimpse member-list:\n%s", out)
	}
	if out := mustGlimpse(t, as("owner", "member-create", id, "p3")...); !memberRow(id, "p3", "pending").MatchString(out) {
		t.Fatalf("glimpse member-create:\n%s", out)
	}
	_, err := glimpseCLI(t, as("owner", "member-create", id, "p3")...)
	if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), "Member p3 is duplicated") {
		t.Fatalf("duplicate member-create: %v", err)
	}
	if _, err := glimpseCLI(t, as("owner", "member-update", id, "p3", "maybe")...); err == nil || !strings.Contains(err.Error(), "pending, accepted, rejected") {
		t.Fatalf("bad status: %v", err)
	}
	if out := mustGlimpse(t, as("other", "member-update", id, "p3", "rejected")...); !memberRow(id, "p3", "rejected").MatchString(out) {
		t.Fatalf("glimpse member-update:\n%s", out)
	}
	if out := mustGlimpse(t, as("owner", "member-get", id, "p3")...); field(t, out, "status") != "rejected" {
		t.Fatalf("glimpse member-get:\n%s", out)
	}
	if out := mustGlimpse(t, as("other", "image-list", "--member-status", "rejected")...); !strings.Contains(out, id) {
		t.Fatalf("glimpse image-list --member-status rejected:\n%s", out)
	}
	mustGlimpse(t, as("owner", "member-delete", id, "p3")...)
	if _, err := glimpseCLI(t, as("owner", "member-delete", id, "p3")...); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("second member-delete: %v", err)
	}
	if _, err := glimpseCLI(t, as("owner", "member-list")...); err == nil || !strings.Contains(err.Error(), "image-id") {
		t.Fatalf("member-list without --image-id: %v", err)
	}
	// Deleting the image takes its members along.
	owner.must("image-delete", id)
	if out, errs, ok := consumer.run("member-list", "--image-id", id); ok || !strings.Contains(out+errs, "404") {
		t.Fatalf("members of a deleted image:\n%s%s", out, errs)
	}
}

// A mount acting as p2 shows p1's shared image in its status directory
// once p2 accepted it, and no longer once p1 removed the membership.
func TestSharedImageInTheMount(t *testing.T) {
	t.Parallel()
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		if os.Getenv("CI") != "" && os.Getuid() == 0 {
			t.Fatalf("/dev/fuse: %v", err)
		}
		t.Skipf("no FUSE here: %v", err)
	} else {
		f.Close()
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o755)
	url := serveInProcess(t, serveOptions{mount: mnt, fsProject: "p2", authTokens: sharingTokens(t)})

	st, body := restAs(t, url, "owner", "POST", "/v2/images", "application/json", strings.NewReader(`{"name": "shared.img", "disk_format": "raw", "container_format": "bare"}`))
	if st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	id := regexp.MustCompile(`"id": *"([^"]+)"`).FindStringSubmatch(body)[1]
	data := bytes.Repeat([]byte("shared!!"), 8<<10)
	if st, body := restAs(t, url, "owner", "PUT", "/v2/images/"+id+"/file", "application/octet-stream", bytes.NewReader(data)); st != 204 {
		t.Fatalf("upload: %d %s", st, body)
	}
	listed := func() bool {
		t.Helper()
		names, err := os.ReadDir(filepath.Join(mnt, "active"))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if n.Name() == "shared.img" {
				return true
			}
		}
		return false
	}
	path := filepath.Join(mnt, "active", "shared.img")
	// Not shared yet: nothing, and the kernel caches the negative lookup.
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) || listed() {
		t.Fatalf("before sharing: %v", err)
	}
	if st, body := restAs(t, url, "owner", "POST", "/v2/images/"+id+"/members", "application/json", strings.NewReader(`{"member": "p2"}`)); st != 200 {
		t.Fatalf("add member: %d %s", st, body)
	}
	// Pending: not in the status directory, but readable by id.
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) || listed() {
		t.Fatalf("pending, in active/: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "images", id)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("pending, by id: %v", err)
	}
	if st, body := restAs(t, url, "consumer", "PUT", "/v2/images/"+id+"/members/p2", "application/json", strings.NewReader(`{"status": "accepted"}`)); st != 200 {
		t.Fatalf("accept: %d %s", st, body)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != int64(len(data)) || !listed() {
		t.Fatalf("accepted, in active/: %v %v", fi, err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("accepted, content: %v", err)
	}
	// A member may not change the image: the owner's rules hold.
	if err := os.Rename(path, filepath.Join(mnt, "active", "mine.img")); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("member renames: %v", err)
	}
	if st, body := restAs(t, url, "owner", "DELETE", "/v2/images/"+id+"/members/p2", "", nil); st != 204 {
		t.Fatalf("remove member: %d %s", st, body)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) || listed() {
		t.Fatalf("removed, in active/: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "images", id)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("removed, by id: %v", err)
	}
}

// gophercloud's members package, which accepts only Glance's exact codes
// (200 on create, 204 on delete), and the image list filter it sends.
func TestMembersGophercloud(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := serveInProcess(t, serveOptions{authTokens: sharingTokens(t)})
	owner, consumer := imageClient(url, "owner"), imageClient(url, "consumer")
	img, err := images.Create(ctx, owner, images.CreateOpts{Name: "gc-shared"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	m, err := members.Create(ctx, owner, img.ID, "p2").Extract()
	if err != nil || m.Status != "pending" || m.MemberID != "p2" || m.CreatedAt.IsZero() {
		t.Fatalf("create: %+v %v", m, err)
	}
	if m, err := members.Update(ctx, consumer, img.ID, "p2", members.UpdateOpts{Status: "accepted"}).Extract(); err != nil || m.Status != "accepted" {
		t.Fatalf("update: %+v %v", m, err)
	}
	pages, err := images.List(consumer, images.ListOpts{MemberStatus: images.ImageMemberStatusAccepted, Visibility: images.ImageVisibilityShared}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := images.ExtractImages(pages); len(list) != 1 || list[0].ID != img.ID {
		t.Fatalf("p2's shared images: %+v", list)
	}
	pages, err = members.List(owner, img.ID).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ms, _ := members.ExtractMembers(pages); len(ms) != 1 || ms[0].Status != "accepted" {
		t.Fatalf("list: %+v", ms)
	}
	if err := members.Delete(ctx, owner, img.ID, "p2").ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := members.Get(ctx, owner, img.ID, "p2").Extract(); statusCode(err) != http.StatusNotFound {
		t.Fatalf("removed member: %v", err)
	}
}

func TestImageMemberQuotaFlag(t *testing.T) {
	if o, err := parseServe(t); err != nil || o.memberQuota != 128 {
		t.Fatalf("default: %d %v, want Glance's 128", o.memberQuota, err)
	}
	if o, err := parseServe(t, "--image-member-quota", "-1"); err != nil || o.memberQuota != -1 {
		t.Fatalf("-1: %d %v", o.memberQuota, err)
	}
	for _, bad := range []string{"0", "-2"} {
		if _, err := parseServe(t, "--image-member-quota", bad); err == nil {
			t.Fatalf("--image-member-quota %s accepted", bad)
		}
	}
	url := serveInProcess(t, serveOptions{authTokens: sharingTokens(t), memberQuota: 2})
	owner := imageClient(url, "owner")
	img, err := images.Create(context.Background(), owner, images.CreateOpts{Name: "x"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range []string{"p2", "p3", "p4"} {
		_, err := members.Create(context.Background(), owner, img.ID, m).Extract()
		if (i < 2) != (err == nil) || i == 2 && statusCode(err) != http.StatusRequestEntityTooLarge {
			t.Fatalf("member %d: %v", i+1, err)
		}
	}
}
