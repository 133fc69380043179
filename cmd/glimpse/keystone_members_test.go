package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/members"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/glimpse-project/glimpse/api/keystone/keystonetest"
)

// oscRunner runs the openstack CLI against one cloud of a clouds.yaml.
type oscRunner func(cloud string, args ...string) (stdout, stderr string, err error)

// shareWithOSC shares image (owned by the "glimpse" cloud's project) with
// consumer (the "consumer" cloud) through the openstack CLI, as cloud
// users run it, and checks what each side sees at every step.
// consumerToken is a token of consumer, to ask the REST listener at url
// directly what the CLI only reports in prose.
func shareWithOSC(t *testing.T, osc oscRunner, image string, consumer keystonetest.Identity, url, consumerToken string) {
	t.Helper()
	run := func(cloud string, args ...string) string {
		t.Helper()
		stdout, stderr, err := osc(cloud, args...)
		if err != nil {
			t.Fatalf("openstack --os-cloud %s %s: %v\n%s%s", cloud, strings.Join(args, " "), err, stdout, stderr)
		}
		return stdout
	}
	listed := func(cloud string, args ...string) bool {
		t.Helper()
		ids := strings.Fields(run(cloud, append([]string{"image", "list", "-f", "value", "-c", "ID"}, args...)...))
		return slices.Contains(ids, image)
	}
	// members is "image member list" as cloud sees it: member id -> status.
	members := func(cloud string) map[string]string {
		t.Helper()
		var rows []struct {
			Member string `json:"Member ID"`
			Status string `json:"Status"`
		}
		out := run(cloud, "image", "member", "list", "-f", "json", image)
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("image member list: %v: %s", err, out)
		}
		got := map[string]string{}
		for _, r := range rows {
			got[r.Member] = r.Status
		}
		return got
	}
	shownToConsumer := func() int {
		t.Helper()
		resp, _ := call(t, "GET", url+"/v2/images/"+image, consumerToken, "")
		return resp.StatusCode
	}

	// Not shared yet: the consumer neither lists nor sees the image.
	if listed("consumer") {
		t.Errorf("the consumer lists the image before it is shared")
	}
	if _, stderr, err := osc("consumer", "image", "show", image); err == nil {
		t.Errorf("the consumer shows the image before it is shared")
	} else if !strings.Contains(stderr, "No Image found") {
		t.Errorf("image show of an image not shared: %s", stderr)
	}

	// The owner shares it, by the consumer's project id (a user who is
	// not an admin cannot look another project's name up in Keystone).
	var added struct {
		MemberID string `json:"member_id"`
		ImageID  string `json:"image_id"`
		Status   string `json:"status"`
	}
	out := run("glimpse", "image", "add", "project", "-f", "json", image, consumer.ProjectID)
	if err := json.Unmarshal([]byte(out), &added); err != nil || added.MemberID != consumer.ProjectID || added.ImageID != image || added.Status != "pending" {
		t.Errorf("image add project: %v: %s", err, out)
	}
	if got := members("glimpse"); len(got) != 1 || got[consumer.ProjectID] != "pending" {
		t.Errorf("the owner's image member list: %v", got)
	}

	// Pending: the consumer sees the image and its own membership, but
	// lists it only when asking for pending ones.
	if code := shownToConsumer(); code != http.StatusOK {
		t.Errorf("the consumer shows a pending image: %d", code)
	}
	if listed("consumer") || listed("consumer", "--shared") {
		t.Errorf("the consumer lists the image before accepting it")
	}
	if !listed("consumer", "--member-status", "pending") || !listed("consumer", "--shared", "--member-status", "all") {
		t.Errorf("the consumer does not list the image with --member-status pending / all")
	}
	saved := filepath.Join(t.TempDir(), "pending.img")
	run("consumer", "image", "save", "--file", saved, image)
	if fi, err := os.Stat(saved); err != nil || fi.Size() == 0 {
		t.Errorf("the consumer saves a pending image: %v", err)
	}

	// The owner cannot accept on the consumer's behalf.
	if _, _, err := osc("glimpse", "image", "set", "--accept", "--project", consumer.ProjectID, image); err == nil {
		t.Errorf("the owner accepted for the consumer")
	}

	// Accepted: listed for the consumer, with or without --shared.
	run("consumer", "image", "set", "--accept", image)
	if !listed("consumer") || !listed("consumer", "--shared") || listed("consumer", "--member-status", "pending") {
		t.Errorf("the consumer does not list the image it accepted, or lists it as pending")
	}
	if got := members("consumer"); len(got) != 1 || got[consumer.ProjectID] != "accepted" {
		t.Errorf("the consumer's image member list: %v", got)
	}
	if !listed("glimpse", "--shared") {
		t.Errorf("the owner does not list its shared image with --shared")
	}
	// The consumer cannot share it further, nor change it.
	if _, _, err := osc("consumer", "image", "add", "project", image, consumer.ProjectID); err == nil {
		t.Errorf("the consumer added a member to an image it does not own")
	}
	if _, _, err := osc("consumer", "image", "set", "--property", "stolen=yes", image); err == nil {
		t.Errorf("the consumer changed an image it does not own")
	}

	// Rejected: the image leaves the consumer's list, and is still shown.
	run("consumer", "image", "set", "--reject", image)
	if listed("consumer") || !listed("consumer", "--member-status", "rejected") {
		t.Errorf("a rejected image: listed by default or not with --member-status rejected")
	}
	run("consumer", "image", "set", "--accept", image)

	// Removed: gone for the consumer, 404 even by id.
	run("glimpse", "image", "remove", "project", image, consumer.ProjectID)
	if got := members("glimpse"); len(got) != 0 {
		t.Errorf("image member list after remove project: %v", got)
	}
	if listed("consumer") || listed("consumer", "--member-status", "all") {
		t.Errorf("the consumer lists the image after its removal")
	}
	if code := shownToConsumer(); code != http.StatusNotFound {
		t.Errorf("the consumer shows the image after its removal: %d, want 404", code)
	}
	if _, stderr, err := osc("consumer", "image", "show", image); err == nil || !strings.Contains(stderr, "No Image found") {
		t.Errorf("image show after removal: %v %s", err, stderr)
	}
}

// shareWithGophercloud does the same member flow with gophercloud's
// imageservice/v2/members, each side authenticated by password and
// finding glimpse in Keystone's catalogue; owner is the owner's client.
func shareWithGophercloud(t *testing.T, ksURL string, owner *gophercloud.ServiceClient, image string, consumer keystonetest.Identity) {
	t.Helper()
	ctx := context.Background()
	provider, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{
		IdentityEndpoint: ksURL, Username: consumer.User, Password: consumer.Password,
		DomainName: "Default", TenantName: consumer.Project,
	})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := openstack.NewImageV2(provider, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	listed := func(opts images.ListOpts) bool {
		t.Helper()
		found := false
		err := images.List(mine, opts).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
			l, err := images.ExtractImages(p)
			for _, i := range l {
				found = found || i.ID == image
			}
			return true, err
		})
		if err != nil {
			t.Fatalf("gophercloud list %+v: %v", opts, err)
		}
		return found
	}
	memberList := func(c *gophercloud.ServiceClient) []members.Member {
		t.Helper()
		page, err := members.List(c, image).AllPages(ctx)
		if err != nil {
			t.Fatalf("gophercloud members.List: %v", err)
		}
		l, err := members.ExtractMembers(page)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	m, err := members.Create(ctx, owner, image, consumer.ProjectID).Extract()
	if err != nil || m.MemberID != consumer.ProjectID || m.ImageID != image || m.Status != "pending" {
		t.Fatalf("gophercloud members.Create: %+v %v", m, err)
	}
	if _, err := members.Create(ctx, owner, image, consumer.ProjectID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Errorf("adding the member twice: %v, want 409", err)
	}
	if _, err := members.Create(ctx, mine, image, consumer.ProjectID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Errorf("the consumer adds a member: %v, want 403", err)
	}
	if listed(images.ListOpts{}) || !listed(images.ListOpts{MemberStatus: "pending"}) {
		t.Errorf("gophercloud, pending: listed by default, or not with member_status=pending")
	}
	if _, err := members.Update(ctx, owner, image, consumer.ProjectID, members.UpdateOpts{Status: "accepted"}).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Errorf("the owner accepts for the consumer: %v, want 403", err)
	}
	m, err = members.Update(ctx, mine, image, consumer.ProjectID, members.UpdateOpts{Status: "accepted"}).Extract()
	if err != nil || m.Status != "accepted" {
		t.Fatalf("gophercloud members.Update accepted: %+v %v", m, err)
	}
	if !listed(images.ListOpts{}) || !listed(images.ListOpts{Visibility: images.ImageVisibilityShared}) {
		t.Errorf("gophercloud, accepted: not listed for the consumer")
	}
	if got, err := members.Get(ctx, mine, image, consumer.ProjectID).Extract(); err != nil || got.Status != "accepted" {
		t.Errorf("gophercloud members.Get by the consumer: %+v %v", got, err)
	}
	if l := memberList(owner); len(l) != 1 || l[0].MemberID != consumer.ProjectID || l[0].Status != "accepted" {
		t.Errorf("gophercloud members.List by the owner: %+v", l)
	}
	if l := memberList(mine); len(l) != 1 || l[0].MemberID != consumer.ProjectID {
		t.Errorf("gophercloud members.List by the consumer: %+v", l)
	}
	if err := members.Delete(ctx, mine, image, consumer.ProjectID).ExtractErr(); !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Errorf("the consumer removes its own membership: %v, want 403", err)
	}
	if err := members.Delete(ctx, owner, image, consumer.ProjectID).ExtractErr(); err != nil {
		t.Fatalf("gophercloud members.Delete: %v", err)
	}
	if _, err := images.Get(ctx, mine, image).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("the consumer gets the image after its removal: %v, want 404", err)
	}
	if listed(images.ListOpts{MemberStatus: "all"}) {
		t.Errorf("gophercloud: the consumer lists the image after its removal")
	}
	if l := memberList(owner); len(l) != 0 {
		t.Errorf("gophercloud members.List after Delete: %+v", l)
	}
}

// TestKeystoneMembers: image sharing decided on real Keystone tokens, role
// by role and project by project: the owner's reader lists members but
// changes none, another project sees neither a private image nor a shared
// one it is not a member of (404), a member's reader cannot accept.
func TestKeystoneMembers(t *testing.T) {
	ksURL := testKeystone.Need(t)
	t.Parallel()
	kc := testKeystone.Client(t)
	url := serveInProcess(t, keystoneOptions(ksURL))
	r := rest{t: t, base: url}

	owner := kc.NewIdentity("members-owner", "member")
	ownerReader := kc.NewUserIn(owner, "members-owner-reader", "reader")
	consumer := kc.NewIdentity("members-consumer", "member")
	consumerReader := kc.NewUserIn(consumer, "members-consumer-reader", "reader")
	stranger := kc.NewIdentity("members-stranger", "member")
	ownerTok, ownerReaderTok := kc.TokenOf(owner), kc.TokenOf(ownerReader)
	consumerTok, consumerReaderTok, strangerTok := kc.TokenOf(consumer), kc.TokenOf(consumerReader), kc.TokenOf(stranger)

	create := func(body string) string {
		t.Helper()
		resp, out := call(t, "POST", url+"/v2/images", ownerTok, body)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: %d %s", body, resp.StatusCode, out)
		}
		return r.decode(out)["id"].(string)
	}
	private := create(`{"name": "members-private", "visibility": "private"}`)
	shared := create(`{"name": "members-shared"}`)
	members := url + "/v2/images/" + shared + "/members"
	membership := members + "/" + consumer.ProjectID
	// memberIDs is the member list as tok sees it.
	memberIDs := func(tok string) string {
		t.Helper()
		resp, out := call(t, "GET", members, tok, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("member list: %d %s", resp.StatusCode, out)
		}
		var l struct {
			Members []struct {
				MemberID string `json:"member_id"`
			}
		}
		json.Unmarshal(out, &l)
		var ids []string
		for _, m := range l.Members {
			ids = append(ids, m.MemberID)
		}
		return strings.Join(ids, ",")
	}
	status := func(method, u, tok, body string) int {
		t.Helper()
		resp, _ := call(t, method, u, tok, body)
		return resp.StatusCode
	}

	// Another project sees neither image.
	for _, id := range []string{private, shared} {
		resp, out := call(t, "GET", url+"/v2/images/"+id, consumerTok, "")
		r.wantGlanceError("another project shows an image not shared with it", resp.StatusCode, out, 404, "")
	}
	if st := status("GET", members, consumerTok, ""); st != http.StatusNotFound {
		t.Errorf("another project lists the members of an image not shared with it: %d, want 404", st)
	}

	// The owner's reader cannot share; nothing is added.
	resp, out := call(t, "POST", members, ownerReaderTok, `{"member": "`+consumer.ProjectID+`"}`)
	r.wantGlanceError("the owner's reader adds a member", resp.StatusCode, out, 403, "Not allowed to create members for image "+shared)
	if got := memberIDs(ownerTok); got != "" {
		t.Errorf("after the reader's refused add the members are %q", got)
	}
	// Only shared images have members.
	resp, out = call(t, "POST", url+"/v2/images/"+private+"/members", ownerTok, `{"member": "`+consumer.ProjectID+`"}`)
	r.wantGlanceError("sharing a private image", resp.StatusCode, out, 403, "Not allowed to create members")

	if st := status("POST", members, ownerTok, `{"member": "`+consumer.ProjectID+`"}`); st != http.StatusOK {
		t.Fatalf("the owner adds a member: %d", st)
	}
	// The owner's reader lists and shows members, changes none.
	if got := memberIDs(ownerReaderTok); got != consumer.ProjectID {
		t.Errorf("the owner's reader lists members %q, want %s", got, consumer.ProjectID)
	}
	if st := status("GET", membership, ownerReaderTok, ""); st != http.StatusOK {
		t.Errorf("the owner's reader shows a member: %d", st)
	}
	resp, out = call(t, "DELETE", membership, ownerReaderTok, "")
	r.wantGlanceError("the owner's reader removes a member", resp.StatusCode, out, 403, "Not allowed to delete members")
	if st := status("PUT", membership, ownerReaderTok, `{"status": "accepted"}`); st != http.StatusForbidden {
		t.Errorf("the owner's reader accepts for the member: %d, want 403", st)
	}

	// The member project: sees the shared image (not the private one),
	// only its own membership; its reader cannot accept, its member can.
	if st := status("GET", url+"/v2/images/"+shared, consumerReaderTok, ""); st != http.StatusOK {
		t.Errorf("the member's reader shows the shared image: %d", st)
	}
	if st := status("GET", url+"/v2/images/"+private, consumerTok, ""); st != http.StatusNotFound {
		t.Errorf("the member shows the owner's private image: %d, want 404", st)
	}
	resp, out = call(t, "PUT", membership, consumerReaderTok, `{"status": "accepted"}`)
	r.wantGlanceError("the member's reader accepts", resp.StatusCode, out, 403, "Not allowed to update members")
	if st := status("PUT", membership, consumerTok, `{"status": "accepted"}`); st != http.StatusOK {
		t.Errorf("the member accepts: %d", st)
	}
	if got := memberIDs(consumerReaderTok); got != consumer.ProjectID {
		t.Errorf("the member's reader lists members %q", got)
	}
	resp, out = call(t, "POST", members, consumerTok, `{"member": "`+stranger.ProjectID+`"}`)
	r.wantGlanceError("the member shares further", resp.StatusCode, out, 403, "Not allowed to create members")

	// A third project still sees nothing of it.
	if st := status("GET", url+"/v2/images/"+shared, strangerTok, ""); st != http.StatusNotFound {
		t.Errorf("a third project shows the shared image: %d, want 404", st)
	}
	if st := status("GET", membership, strangerTok, ""); st != http.StatusNotFound {
		t.Errorf("a third project shows a membership: %d, want 404", st)
	}

	// Removed: 404 for the former member, image and membership alike.
	if st := status("DELETE", membership, ownerTok, ""); st != http.StatusNoContent {
		t.Fatalf("the owner removes the member: %d", st)
	}
	for _, u := range []string{url + "/v2/images/" + shared, membership} {
		if st := status("GET", u, consumerTok, ""); st != http.StatusNotFound {
			t.Errorf("after removal GET %s: %d, want 404", strings.TrimPrefix(u, url), st)
		}
	}
}
