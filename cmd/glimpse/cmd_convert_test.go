package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// glimpse runs the glimpse command (this test binary re-executed as main).
func glimpse(t *testing.T, args ...string) (string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "GLIMPSE_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// glimpse info agrees with qemu-img info on the fields both print, and
// glimpse convert's output compares equal to its input under qemu-img.
func TestInfoAndConvertCommands(t *testing.T) {
	needTool(t, "qemu-img")
	tmp := t.TempDir()
	raw := randomFile(t, tmp, "src.raw", 3<<20)
	qcow := filepath.Join(tmp, "src.qcow2")
	mustRun(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)

	out, err := glimpse(t, "info", "--output", "json", qcow)
	if err != nil {
		t.Fatalf("glimpse info: %v\n%s", err, out)
	}
	var ours, theirs map[string]any
	if err := json.Unmarshal([]byte(out), &ours); err != nil {
		t.Fatalf("glimpse info --output json: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(mustRun(t, "qemu-img", "info", "--output", "json", qcow)), &theirs); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"format", "virtual-size", "cluster-size"} {
		if ours[k] != theirs[k] {
			t.Errorf("%s: glimpse %v, qemu-img %v", k, ours[k], theirs[k])
		}
	}

	for _, c := range []struct{ format, opt string }{{"vmdk", "subformat=streamOptimized"}, {"vdi", ""}, {"vpc", ""}, {"raw", ""}} {
		dst := filepath.Join(tmp, "out."+c.format)
		args := []string{"convert", "-f", "qcow2", "-O", c.format}
		if c.opt != "" {
			args = append(args, "-o", c.opt)
		}
		if out, err := glimpse(t, append(args, qcow, dst)...); err != nil {
			t.Fatalf("glimpse %v: %v\n%s", args, err, out)
		}
		mustRun(t, "qemu-img", "compare", "-f", "qcow2", "-F", c.format, qcow, dst)
	}

	// Bad input: one readable line and a non-zero exit.
	if out, err := glimpse(t, "convert", "-O", "nosuch", qcow, filepath.Join(tmp, "x")); err == nil {
		t.Fatalf("an unknown output format was accepted: %s", out)
	}
	if out, err := glimpse(t, "info", filepath.Join(tmp, "missing")); err == nil {
		t.Fatalf("info of a missing file succeeded: %s", out)
	}
}
