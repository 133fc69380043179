package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProgressBarShowsBytesRateAndETA(t *testing.T) {
	var out bytes.Buffer
	bar := newProgressBar("upload", 1<<20, &out)
	bar.start = time.Now().Add(-2 * time.Second) // half done in 2 s
	bar.update(512 << 10)
	got := out.String()
	for _, want := range []string{"upload [", " 50% ", "512.0 KiB/1.0 MiB", "256.0 KiB/s", "ETA 2s"} {
		if !strings.Contains(got, want) {
			t.Errorf("bar %q lacks %q", got, want)
		}
	}
}

// glimpseCommand is the test binary run as glimpse with args.
func glimpseCommand(t *testing.T, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "GLIMPSE_RUN_MAIN=1")
	return cmd
}

// onTerminal runs cmd under script(1), which gives it a pseudo-terminal,
// and returns what the terminal showed.
func onTerminal(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	needTool(t, "script")
	line := ""
	for _, a := range cmd.Args {
		line += "'" + strings.ReplaceAll(a, "'", `'\''`) + "' "
	}
	term := exec.Command("script", "-qec", line, "/dev/null")
	term.Env = cmd.Env
	out, err := term.CombinedOutput()
	if err != nil {
		t.Fatalf("%s on a terminal: %v\n%s", cmd.Args[1:], err, out)
	}
	return string(out)
}

// Transfers show a bar with bytes, rate and ETA on a terminal and nothing
// when stderr is a pipe: convert -p, image-create --file, image-download.
func TestProgressOnTerminalOnly(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.raw")
	data := make([]byte, 8<<20)
	rand.Read(data)
	os.WriteFile(in, data, 0o600)
	url := serveInProcess(t, serveOptions{})

	cases := []struct {
		name string
		args []string
	}{
		{"convert -p", []string{"convert", "-p", "-O", "qcow2", in, filepath.Join(dir, "out.qcow2")}},
		{"image-create --file", []string{"image-create", "--os-image-url", url, "--name", "bar", "--disk-format", "raw", "--container-format", "bare", "--file", in}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			shown := onTerminal(t, glimpseCommand(t, c.args...))
			for _, want := range []string{"100%", "8.0 MiB/8.0 MiB", "/s ", "ETA "} {
				if !strings.Contains(shown, want) {
					t.Errorf("terminal showed %q, want %q in it", shown, want)
				}
			}
			cmd := glimpseCommand(t, c.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("piped: %v %s", err, stderr.String())
			}
			if stderr.Len() != 0 {
				t.Errorf("piped stderr: %q, want nothing", stderr.String())
			}
		})
	}
}
