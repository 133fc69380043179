package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/glimpse-project/glimpse/api/keystone"
	"github.com/glimpse-project/glimpse/api/keystone/keystonetest"
)

// testKeystone is the Keystone this binary's tests share; TestMain stops it.
var testKeystone = keystonetest.NewServer("../../scripts/keystone", time.Hour)

// keystoneOptions are the serve options of a daemon validating tokens with
// the Keystone (or proxy) at url as scripts/keystone's service user.
func keystoneOptions(url string) serveOptions {
	return serveOptions{keystone: keystone.Config{
		URL: url, User: keystonetest.ServiceUser, Password: keystonetest.ServicePassword,
		Project: keystonetest.ServiceProject, Domain: "Default", Timeout: 3 * time.Second,
	}}
}

// call sends one REST request with token (none if "") and returns the
// answer with its body read.
func call(t *testing.T, method, url, token, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	req.Header.Set("Accept", "application/json")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

// TestKeystoneREST: the REST listener under --keystone-url, token by
// token: who is who, what each project sees, and every bad token answered
// as Glance behind keystonemiddleware answers it.
func TestKeystoneREST(t *testing.T) {
	ksURL := testKeystone.Need(t)
	t.Parallel()
	kc := testKeystone.Client(t)
	proxy := keystonetest.NewProxy(t, ksURL)
	url := serveInProcess(t, keystoneOptions(proxy.URL()))
	r := rest{t: t, base: url}

	alice := kc.NewIdentity("rest-alice", "member")
	bob := kc.NewIdentity("rest-bob", "member")
	reader := kc.NewIdentity("rest-reader", "reader")
	admin := kc.NewIdentity("rest-admin", "admin")
	aliceTok, bobTok, readerTok, adminTok := kc.TokenOf(alice), kc.TokenOf(bob), kc.TokenOf(reader), kc.TokenOf(admin)

	create := func(tok, body string) map[string]any {
		t.Helper()
		resp, out := call(t, "POST", url+"/v2/images", tok, body)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: %d %s", body, resp.StatusCode, out)
		}
		return r.decode(out)
	}
	private := create(aliceTok, `{"name": "alice-private", "disk_format": "raw", "container_format": "bare"}`)
	if private["owner"] != alice.ProjectID {
		t.Errorf("owner %v, want alice's project %s", private["owner"], alice.ProjectID)
	}
	public := create(adminTok, `{"name": "admin-public", "visibility": "public", "disk_format": "raw", "container_format": "bare"}`)
	bobs := create(bobTok, `{"name": "bob-private", "disk_format": "raw", "container_format": "bare"}`)

	names := func(tok string) []string {
		t.Helper()
		resp, out := call(t, "GET", url+"/v2/images?sort_key=name&sort_dir=asc", tok, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("list: %d %s", resp.StatusCode, out)
		}
		var list struct{ Images []struct{ Name string } }
		json.Unmarshal(out, &list)
		var ns []string
		for _, i := range list.Images {
			ns = append(ns, i.Name)
		}
		return ns
	}
	// A token of another project sees its own images and public ones.
	if got := strings.Join(names(bobTok), ","); got != "admin-public,bob-private" {
		t.Errorf("bob lists %s", got)
	}
	if resp, out := call(t, "GET", url+"/v2/images/"+private["id"].(string), bobTok, ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("bob shows alice's private image: %d %s", resp.StatusCode, out)
	}
	if got := strings.Join(names(adminTok), ","); got != "admin-public,alice-private,bob-private" {
		t.Errorf("admin lists %s", got)
	}
	// A reader reads, and cannot create.
	if got := strings.Join(names(readerTok), ","); got != "admin-public" {
		t.Errorf("reader lists %s", got)
	}
	if resp, out := call(t, "POST", url+"/v2/images", readerTok, `{"name": "x"}`); resp.StatusCode != http.StatusForbidden {
		t.Errorf("reader creates: %d %s", resp.StatusCode, out)
	}
	if resp, out := call(t, "DELETE", url+"/v2/images/"+bobs["id"].(string), aliceTok, ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("alice deletes bob's image: %d %s", resp.StatusCode, out)
	}

	forged := []byte(aliceTok)
	forged[len(forged)/2] ^= 1
	revoked := kc.TokenOf(alice)
	kc.Revoke(revoked)
	disabled := kc.NewIdentity("rest-disabled", "member")
	disabledTok := kc.TokenOf(disabled)
	kc.DisableUser(disabled)
	domainUser := kc.NewIdentity("rest-domain", "member")
	kc.GrantDomainRole(domainUser, "member")
	domainTok := kc.DomainToken(domainUser.User, domainUser.Password)
	wwwAuth := fmt.Sprintf("Keystone uri=%q", proxy.URL())

	for _, c := range []struct {
		name, token string
		status      int
		msg         string
	}{
		{"no token", "", 401, "could not verify that you are authorized"},
		{"forged", string(forged), 401, "could not verify that you are authorized"},
		{"revoked", revoked, 401, "could not verify that you are authorized"},
		{"disabled user's", disabledTok, 401, "could not verify that you are authorized"},
		{"domain-scoped", domainTok, 403, "not scoped to a project"},
		{"64 KiB", strings.Repeat("a", 64<<10), 400, "longer than any Keystone token"},
	} {
		before := proxy.Validations()
		resp, out := call(t, "GET", url+"/v2/images", c.token, "")
		r.wantGlanceError(c.name+" token", resp.StatusCode, out, c.status, c.msg)
		if got := resp.Header.Get("WWW-Authenticate"); (c.status == 401) != (got == wwwAuth) {
			t.Errorf("%s token: WWW-Authenticate %q (status %d), want %q on 401s", c.name, got, c.status, wwwAuth)
		}
		if c.name == "64 KiB" && proxy.Validations() != before {
			t.Errorf("a 64 KiB token was sent to Keystone")
		}
	}
	// Nothing changed: every refusal left the catalogue as it was.
	if got := strings.Join(names(adminTok), ","); got != "admin-public,alice-private,bob-private" {
		t.Errorf("after the refusals admin lists %s", got)
	}

	// Keystone unreachable: a token not in the cache is 503, a cached one
	// still works; back, the new token works.
	fresh := kc.TokenOf(bob)
	proxy.Down()
	resp, out := call(t, "GET", url+"/v2/images", fresh, "")
	r.wantGlanceError("Keystone down, a new token", resp.StatusCode, out, 503, "Keystone service is temporarily unavailable")
	if resp, out := call(t, "GET", url+"/v2/images", bobTok, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("Keystone down, a cached token: %d %s", resp.StatusCode, out)
	}
	proxy.Up(t)
	if resp, out := call(t, "GET", url+"/v2/images", fresh, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("Keystone back: %d %s", resp.StatusCode, out)
	}
	if resp, out := call(t, "GET", url+"/v2/images/"+public["id"].(string), fresh, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("bob shows the public image: %d %s", resp.StatusCode, out)
	}

	// The validations with Keystone, by result, in /metrics: the forged,
	// revoked and disabled tokens are invalid (each asked once), the 64
	// KiB one never asked.
	_, metrics := call(t, "GET", url+"/metrics", "", "")
	for _, want := range []string{
		`glimpse_keystone_validations_total{result="invalid"} 3`,
		`glimpse_keystone_validations_total{result="not_project_scoped"} 1`,
		`glimpse_keystone_validations_total{result="unavailable"} 1`,
	} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestKeystoneFlags: --keystone-url with --auth-tokens, or with a wrong
// service password, is a startup error that says why.
func TestKeystoneFlags(t *testing.T) {
	ksURL := testKeystone.Need(t)
	t.Parallel()
	o := keystoneOptions(ksURL)
	o.authTokens = filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(o.authTokens, []byte(`{"tokens": {}}`), 0o600)
	o.data, o.listen, o.logLevel = t.TempDir(), freeAddr(t), "error"
	if err := runServe(context.Background(), o); err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Errorf("--auth-tokens with --keystone-url: %v", err)
	}
	o = keystoneOptions(ksURL)
	o.keystone.Password = "wrong"
	o.data, o.listen, o.logLevel = t.TempDir(), freeAddr(t), "error"
	if err := runServe(context.Background(), o); err == nil || !strings.Contains(err.Error(), "--keystone-url") || !strings.Contains(err.Error(), keystonetest.ServiceUser) {
		t.Errorf("a wrong service password: %v", err)
	}
}

// TestKeystoneCatalogue: glimpse registered in Keystone's catalogue as the
// image service, used unchanged by the openstack CLI (with a clouds.yaml)
// and by gophercloud with password auth.
func TestKeystoneCatalogue(t *testing.T) {
	ksURL := testKeystone.Need(t)
	needTool(t, "openstack")
	needTool(t, "qemu-img")
	t.Parallel()
	kc := testKeystone.Client(t)
	url := serveInProcess(t, keystoneOptions(ksURL))
	user := kc.NewIdentity("osc", "member")
	dir := t.TempDir()

	clouds := filepath.Join(dir, "clouds.yaml")
	writeClouds := func(name, user, password, project string) {
		f, err := os.OpenFile(clouds, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			t.Fatal(err)
		}
		if fi, _ := f.Stat(); fi.Size() == 0 {
			fmt.Fprintln(f, "clouds:")
		}
		fmt.Fprintf(f, `  %s:
    auth:
      auth_url: %s
      username: %s
      password: %s
      project_name: %s
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
    interface: public
`, name, ksURL, user, password, project)
	}
	writeClouds("keystone-admin", keystonetest.AdminUser, keystonetest.AdminPassword, "admin")
	writeClouds("glimpse", user.User, user.Password, user.Project)
	consumer := kc.NewIdentity("osc-consumer", "member")
	writeClouds("consumer", consumer.User, consumer.Password, consumer.Project)
	oscTry := func(cloud string, args ...string) (stdout, stderr string, err error) {
		// A client stuck on a server fails this test with its output,
		// not the whole package at its timeout.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "openstack", append([]string{"--os-cloud", cloud}, args...)...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "OS_CLIENT_CONFIG_FILE=" + clouds}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err = cmd.Run()
		return out.String(), errOut.String(), err
	}
	osc := func(cloud string, args ...string) string {
		t.Helper()
		stdout, stderr, err := oscTry(cloud, args...)
		if err != nil {
			t.Fatalf("openstack %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
		}
		return stdout
	}

	// Register glimpse as the image service, as an operator does.
	service := strings.TrimSpace(osc("keystone-admin", "service", "create", "--name", "glance", "--description", "glimpse", "-f", "value", "-c", "id", "image"))
	t.Cleanup(func() { osc("keystone-admin", "service", "delete", service) })
	for _, iface := range []string{"public", "internal", "admin"} {
		osc("keystone-admin", "endpoint", "create", "--region", "RegionOne", service, iface, url)
	}

	img := filepath.Join(dir, "disk.qcow2")
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "64M")
	content, _ := os.ReadFile(img)
	sum := md5.Sum(content)

	created := osc("glimpse", "image", "create", "--disk-format", "qcow2", "--container-format", "bare", "--file", img, "-f", "json", "osc-image")
	var c struct{ ID string }
	if err := json.Unmarshal([]byte(created), &c); err != nil || c.ID == "" {
		t.Fatalf("image create: %v: %s", err, created)
	}
	if list := osc("glimpse", "image", "list", "-f", "value", "-c", "Name"); !strings.Contains(list, "osc-image") {
		t.Errorf("image list: %s", list)
	}
	osc("glimpse", "image", "set", "--property", "os_distro=debian", c.ID)
	var shown map[string]any
	json.Unmarshal([]byte(osc("glimpse", "image", "show", "-f", "json", "osc-image")), &shown)
	props, _ := shown["properties"].(map[string]any)
	if shown["status"] != "active" || shown["checksum"] != hex.EncodeToString(sum[:]) || shown["owner"] != user.ProjectID || props["os_distro"] != "debian" {
		t.Errorf("image show: %v", shown)
	}
	saved := filepath.Join(dir, "saved.qcow2")
	osc("glimpse", "image", "save", "--file", saved, c.ID)
	if got, _ := os.ReadFile(saved); !bytes.Equal(got, content) {
		t.Errorf("image save: %d bytes, want the %d uploaded", len(got), len(content))
	}

	shareWithOSC(t, oscTry, c.ID, consumer, url, kc.TokenOf(consumer))

	// gophercloud: password auth, the image endpoint from the catalogue.
	ctx := context.Background()
	provider, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{
		IdentityEndpoint: ksURL, Username: user.User, Password: user.Password,
		DomainName: "Default", TenantName: user.Project,
	})
	if err != nil {
		t.Fatal(err)
	}
	gc, err := openstack.NewImageV2(provider, gophercloud.EndpointOpts{Region: "RegionOne"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(gc.Endpoint, url) {
		t.Errorf("gophercloud's image endpoint %s, want glimpse's %s", gc.Endpoint, url)
	}
	var ids []string
	err = images.List(gc, images.ListOpts{}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		l, err := images.ExtractImages(p)
		for _, i := range l {
			ids = append(ids, i.ID)
		}
		return true, err
	})
	if err != nil || len(ids) != 1 || ids[0] != c.ID {
		t.Errorf("gophercloud list: %v %v", ids, err)
	}
	rd, err := imagedata.Download(ctx, gc, c.ID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rd)
	rd.Close()
	if !bytes.Equal(got, content) {
		t.Errorf("gophercloud download: %d bytes", len(got))
	}

	shareWithGophercloud(t, ksURL, gc, c.ID, consumer)

	// The glance CLI with OS_* variables finds glimpse the same way.
	if _, err := exec.LookPath("glance"); err == nil {
		cmd := exec.Command("glance", "image-list")
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "OS_AUTH_URL=" + ksURL,
			"OS_USERNAME=" + user.User, "OS_PASSWORD=" + user.Password, "OS_PROJECT_NAME=" + user.Project,
			"OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default", "OS_REGION_NAME=RegionOne"}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), c.ID) {
			t.Errorf("glance image-list through the catalogue: %v\n%s", err, out)
		}
	}

	osc("glimpse", "image", "delete", c.ID)
	if list := osc("glimpse", "image", "list", "-f", "value", "-c", "ID"); strings.Contains(list, c.ID) {
		t.Errorf("after image delete: %s", list)
	}
}
