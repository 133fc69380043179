package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// --policy-file, its variable and its config-file key all reach serve, as
// does --require-image-format-match (true unless said otherwise).
func TestServePolicyAndFormatSettings(t *testing.T) {
	o, err := parseServe(t)
	if err != nil {
		t.Fatal(err)
	}
	if o.policyFile != "" || !o.requireFormatMatch {
		t.Errorf("defaults: policy file %q, require format match %v; want none and true", o.policyFile, o.requireFormatMatch)
	}
	if o, err = parseServe(t, "--policy-file", "/etc/glimpse/policy.yaml", "--require-image-format-match=false"); err != nil {
		t.Fatal(err)
	}
	if o.policyFile != "/etc/glimpse/policy.yaml" || o.requireFormatMatch {
		t.Errorf("flags: %q %v", o.policyFile, o.requireFormatMatch)
	}
	t.Setenv("GLIMPSE_POLICY_FILE", "/from/env.yaml")
	t.Setenv("GLIMPSE_REQUIRE_IMAGE_FORMAT_MATCH", "false")
	if o, err = parseServe(t); err != nil || o.policyFile != "/from/env.yaml" || o.requireFormatMatch {
		t.Errorf("environment: %q %v %v", o.policyFile, o.requireFormatMatch, err)
	}
	os.Unsetenv("GLIMPSE_POLICY_FILE")
	os.Unsetenv("GLIMPSE_REQUIRE_IMAGE_FORMAT_MATCH")
	cfg := writeConfig(t, "policy-file: /from/file.yaml\nrequire-image-format-match: false\n")
	if o, err = parseServe(t, "--config", cfg); err != nil || o.policyFile != "/from/file.yaml" || o.requireFormatMatch {
		t.Errorf("config file: %q %v %v", o.policyFile, o.requireFormatMatch, err)
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
