package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// scripts/install stages the binary, the unit, the default config and the
// data directory; the unit passes systemd-analyze verify (which checks its
// syntax and that its commands exist), and the default config is one that
// serve accepts.
func TestInstallScriptAndUnit(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	install := exec.Command("../../scripts/install")
	install.Env = append(os.Environ(), "DESTDIR="+root, "GLIMPSE_BIN="+exe, "GLIMPSE_RUN_MAIN=1")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("scripts/install: %v\n%s", err, out)
	}
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/glimpse":              0o755,
		"etc/systemd/system/glimpse.service": 0o644,
		"etc/glimpse/glimpse.yaml":           0o600,
		"var/lib/glimpse":                    os.ModeDir | 0o700,
		"mnt/glimpse":                        os.ModeDir | 0o755,
	} {
		st, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("installed %s: %v", path, err)
		} else if st.Mode()&(os.ModeDir|os.ModePerm) != mode {
			t.Errorf("installed %s: mode %v, want %v", path, st.Mode(), mode)
		}
	}

	o, err := parseServe(t, "--config", filepath.Join(root, "etc/glimpse/glimpse.yaml"))
	if err != nil {
		t.Fatalf("the default config: %v", err)
	}
	if o.data != "/var/lib/glimpse" || o.logFormat != "json" {
		t.Errorf("default config gave data %q, log format %q", o.data, o.logFormat)
	}

	needTool(t, "systemd-analyze")
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/glimpse.service"))
	if err != nil {
		t.Fatal(err)
	}
	// verify wants ExecStart's binary where the unit says it is.
	staged := strings.ReplaceAll(string(unit), "/usr/local/bin/glimpse", filepath.Join(root, "usr/local/bin/glimpse"))
	check := filepath.Join(t.TempDir(), "glimpse.service")
	os.WriteFile(check, []byte(staged), 0o644)
	if out, err := exec.Command("systemd-analyze", "verify", check).CombinedOutput(); err != nil || strings.Contains(string(out), "glimpse.service:") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	if !strings.Contains(staged, "Type=notify") || !strings.Contains(staged, "ExecStopPost=-/bin/umount -l /mnt/glimpse") {
		t.Error("the unit lost Type=notify or the umount clean-up")
	}
}

// scripts/install builds a binary that says which commit it was built
// from, even on a machine whose GOFLAGS turn VCS stamping off.
func TestInstallStampsRevision(t *testing.T) {
	needTool(t, "git")
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The go command finds a repository by its .git directory only: a
	// linked worktree (a .git file) gets no stamp.
	if st, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !st.IsDir() {
		t.Skip("a git worktree, not a clone: the go command stamps no revision here")
	}
	root := t.TempDir()
	install := exec.Command("../../scripts/install")
	install.Env = append(os.Environ(), "DESTDIR="+root, "GOFLAGS=-buildvcs=false")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("scripts/install: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(root, "usr/local/bin/glimpse"), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("glimpse version: %v\n%s", err, out)
	}
	if want := "(revision " + strings.TrimSpace(string(head)); !strings.Contains(string(out), want) {
		t.Fatalf("glimpse version says %q, want it to contain %q", out, want)
	}
}
