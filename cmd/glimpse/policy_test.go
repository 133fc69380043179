package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/lifecycle/policy"
)

// --policy-file, its variable and its config-file key all reach serve, as
// does --require-image-format-match (true unless said otherwise).
func TestServePolicyAndFormatSettings(t *testing.T) {
	o, err := parseServe(t)
	if err != nil {
		t.Fatal(err)
	}
	if o.policyFile != "" || o.allowFormatMismatch {
		t.Errorf("defaults: policy file %q, require format match %v; want none and true", o.policyFile, !o.allowFormatMismatch)
	}
	if o, err = parseServe(t, "--policy-file", "/etc/glimpse/policy.yaml", "--require-image-format-match=false"); err != nil {
		t.Fatal(err)
	}
	if o.policyFile != "/etc/glimpse/policy.yaml" || !o.allowFormatMismatch {
		t.Errorf("flags: %q %v", o.policyFile, !o.allowFormatMismatch)
	}
	t.Setenv("GLIMPSE_POLICY_FILE", "/from/env.yaml")
	t.Setenv("GLIMPSE_REQUIRE_IMAGE_FORMAT_MATCH", "false")
	if o, err = parseServe(t); err != nil || o.policyFile != "/from/env.yaml" || !o.allowFormatMismatch {
		t.Errorf("environment: %q %v %v", o.policyFile, !o.allowFormatMismatch, err)
	}
	os.Unsetenv("GLIMPSE_POLICY_FILE")
	os.Unsetenv("GLIMPSE_REQUIRE_IMAGE_FORMAT_MATCH")
	cfg := writeConfig(t, "policy-file: /from/file.yaml\nrequire-image-format-match: false\n")
	if o, err = parseServe(t, "--config", cfg); err != nil || o.policyFile != "/from/file.yaml" || !o.allowFormatMismatch {
		t.Errorf("config file: %q %v %v", o.policyFile, !o.allowFormatMismatch, err)
	}
}

// A policy file glimpse cannot honour stops the start: exit status 1 and
// one line that names the file and the problem, before anything is opened
// or mounted.
func TestServeRefusesBadPolicyFile(t *testing.T) {
	exe, _ := os.Executable()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct{ file, says string }{
		{write("typo.yaml", "\"publicise_image\": \"role:member\"\n"), `rule "publicise_image" is not one of Glance's rules that glimpse knows (did you mean "publicize_image"?)`},
		{write("ref.yaml", "\"delete_image\": \"rule:admin_or_owner\"\n"), `rule "delete_image" refers to rule:admin_or_owner, which does not exist`},
		{write("syntax.yaml", "\"delete_image\": \"role:admin or\"\n"), `rule "delete_image": policy syntax error`},
		{filepath.Join(dir, "missing.yaml"), "no such file"},
	} {
		data := filepath.Join(dir, "data-"+filepath.Base(c.file))
		cmd := exec.Command(exe, "serve", "--mount", "", "--listen", "127.0.0.1:0", "--data", data, "--policy-file", c.file)
		cmd.Env = append(os.Environ(), "GLIMPSE_RUN_MAIN=1")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%s: %v, want exit status 1 (output %q)", c.file, err, out)
			continue
		}
		text := strings.TrimSpace(string(out))
		if strings.Contains(text, "\n") || !strings.HasPrefix(text, "glimpse: --policy-file: ") || !strings.Contains(text, c.says) {
			t.Errorf("%s: output %q, want one line 'glimpse: --policy-file: ...' saying %q", c.file, text, c.says)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("%s: the data directory was created before the policy was checked (%v)", c.file, err)
		}
	}
}

// Glance's default policy through the real glance CLI: an admin sets and
// changes an image's owner; a member of the owning project may not change
// the owner but may deactivate and reactivate, and may not download while
// the image is deactivated.
func TestGlanceCLIPolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {"adm": {"project": "admin", "roles": ["admin"]}, "mem": {"project": "p1", "roles": ["member"]}}}`), 0o600)
	url := serveInProcess(t, serveOptions{authTokens: tokens})
	admin, member := newGlanceCLI(t, url, "adm"), newGlanceCLI(t, url, "mem")
	src := filepath.Join(dir, "disk.raw")
	data := make([]byte, 64<<10)
	rand.Read(data)
	os.WriteFile(src, data, 0o644)

	out := admin.must("image-create", "--name", "for-p1", "--owner", "p1", "--disk-format", "raw", "--container-format", "bare", "--file", src)
	id := field(t, out, "id")
	if field(t, out, "owner") != "p1" || field(t, out, "status") != "active" {
		t.Fatalf("admin image-create --owner p1:\n%s", out)
	}
	if out := admin.must("image-update", "--owner", "p2", id); field(t, out, "owner") != "p2" {
		t.Fatalf("admin image-update --owner p2:\n%s", out)
	}
	if _, _, ok := member.run("image-show", id); ok {
		t.Fatal("p1 still sees the image it gave away")
	}
	admin.must("image-update", "--owner", "p1", id)

	out, errs, ok := member.run("image-update", "--owner", "p2", id)
	if ok || !strings.Contains(out+errs, "403") {
		t.Fatalf("member image-update --owner: ok=%v\n%s%s", ok, out, errs)
	}
	out, errs, ok = member.run("image-create", "--name", "x", "--owner", "p2", "--disk-format", "raw", "--container-format", "bare")
	if ok || !strings.Contains(out+errs, "403") {
		t.Fatalf("member image-create --owner p2: ok=%v\n%s%s", ok, out, errs)
	}

	member.must("image-deactivate", id)
	if out := member.must("image-show", id); field(t, out, "status") != "deactivated" {
		t.Fatalf("after the member's image-deactivate:\n%s", out)
	}
	out, errs, ok = member.run("image-download", "--file", filepath.Join(dir, "no.raw"), id)
	if ok || !strings.Contains(out+errs, "403") {
		t.Fatalf("member downloading a deactivated image: ok=%v\n%s%s", ok, out, errs)
	}
	dst := filepath.Join(dir, "out.raw")
	admin.must("image-download", "--file", dst, id)
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("admin's download of the deactivated image differs")
	}
	member.must("image-reactivate", id)
	member.must("image-download", "--file", dst, id)
}

// Random bytes declared vhd, as Tempest uploads them, through the glance
// CLI: refused by default, accepted with --require-image-format-match=false.
func TestGlanceCLIFormatMatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "random.vhd")
	data := make([]byte, 4096)
	rand.Read(data)
	os.WriteFile(src, data, 0o644)
	strict := newGlanceCLI(t, serveInProcess(t, serveOptions{}), "T")
	out, errs, ok := strict.run("image-create", "--name", "r", "--disk-format", "vhd", "--container-format", "bare", "--file", src)
	if ok || !strings.Contains(out+errs, "415") {
		t.Fatalf("random bytes declared vhd, format match required: ok=%v\n%s%s", ok, out, errs)
	}
	lax := newGlanceCLI(t, serveInProcess(t, serveOptions{allowFormatMismatch: true}), "T")
	out = lax.must("image-create", "--name", "r", "--disk-format", "vhd", "--container-format", "bare", "--file", src)
	if field(t, out, "status") != "active" || field(t, out, "disk_format") != "vhd" || field(t, out, "glimpse.detected_format") != "raw" {
		t.Fatalf("random bytes declared vhd, mismatch allowed:\n%s", out)
	}
}

// glimpse policy prints a policy file that loads back as the same rules.
func TestPolicyCommandPrintsALoadableFile(t *testing.T) {
	dir := t.TempDir()
	over := filepath.Join(dir, "over.yaml")
	os.WriteFile(over, []byte(`"delete_image": "!"`+"\n"), 0o600)
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "policy", "--policy-file", over)
	cmd.Env = append(os.Environ(), "GLIMPSE_RUN_MAIN=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("glimpse policy: %v", err)
	}
	printed := filepath.Join(dir, "printed.yaml")
	os.WriteFile(printed, out, 0o600)
	e, err := policy.LoadFile(printed)
	if err != nil {
		t.Fatalf("the printed policy does not load: %v", err)
	}
	for _, r := range policy.Defaults {
		got, _ := e.CheckString(r.Name)
		want := r.Check
		if r.Name == policy.DeleteImage {
			want = "!"
		}
		if got != want {
			t.Errorf("%s: printed %q, want %q", r.Name, got, want)
		}
	}
	if !strings.Contains(string(out), `"delete_image": "!"  # overridden`) {
		t.Errorf("the override is not marked:\n%s", out)
	}
}
