package main

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// runMain runs the real binary (this test executable as main) with env
// added to the test's, and returns its stderr, stdout and exit status.
func runMain(t *testing.T, env []string, args ...string) (stderr, stdout string, code int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), "GLIMPSE_RUN_MAIN=1", "GLIMPSE_DATA="+t.TempDir()), env...)
	var errb, outb strings.Builder
	cmd.Stderr, cmd.Stdout = &errb, &outb
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("glimpse %v: %v", args, err)
	}
	return errb.String(), outb.String(), code
}

// A command line glimpse cannot take is one line on stderr naming the
// problem, the closest name when it looks like a typo, and the help to
// read; exit status 2. Nothing goes to stdout.
func TestUsageErrorsAreOneLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"image-list", "--bogus"}, "glimpse: unknown flag --bogus; see 'glimpse image-list --help'"},
		{[]string{"serve", "--moutn", "/x"}, "glimpse: unknown flag --moutn (did you mean --mount?); see 'glimpse serve --help'"},
		{[]string{"image-create", "--min-ram", "abc"}, `glimpse: invalid value "abc" for flag --min-ram; see 'glimpse image-create --help'`},
		{[]string{"image-lst"}, `glimpse: unknown command "image-lst" (did you mean "image-list"?); see 'glimpse --help'`},
		{[]string{"frobnicate"}, `glimpse: unknown command "frobnicate"; see 'glimpse --help'`},
		{[]string{"help", "image-lst"}, `glimpse: unknown command "image-lst" (did you mean "image-list"?); see 'glimpse --help'`},
		{[]string{"image-show"}, "glimpse: image-show needs exactly one image id; see 'glimpse image-show --help'"},
		{[]string{"--bogus", "image-list"}, "glimpse: unknown flag --bogus; see 'glimpse --help'"},
	} {
		stderr, stdout, code := runMain(t, nil, tc.args...)
		if code != 2 || stderr != tc.want+"\n" || stdout != "" {
			t.Errorf("glimpse %v: exit %d, stderr %q, stdout %q; want exit 2 and stderr %q", tc.args, code, stderr, stdout, tc.want)
		}
	}
}

// Other failures exit 1, and a refused connection says what to check.
func TestFailureExitsOne(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t) // nothing listens there
	stderr, _, code := runMain(t, nil, "image-list", "--os-image-url", "http://"+addr)
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "connection refused (is glimpse serve running there?") {
		t.Fatalf("image-list against nothing: exit %d, stderr %q", code, stderr)
	}
}

// Without --os-image-url or OS_IMAGE_URL (or with it empty) the client
// commands, scrub and gc too, talk to http://127.0.0.1:9292, as their help
// says; a flag after the command wins over one before it and over the
// variable.
func TestClientCommandsDefaultEndpoint(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"", []string{"image-list"}, defaultImageURL},
		{"", []string{"scrub"}, defaultImageURL},
		{"", []string{"gc", "--dry-run"}, defaultImageURL},
		{"http://a:1", []string{"image-list"}, "http://a:1"},
		{"http://a:1", []string{"--os-image-url", "http://b:2", "image-list"}, "http://b:2"},
		{"http://a:1", []string{"--os-image-url", "http://b:2", "image-list", "--os-image-url", "http://c:3"}, "http://c:3"},
	} {
		t.Setenv("OS_IMAGE_URL", tc.env)
		app := newApp()
		var got string
		for _, cmd := range app.Commands {
			cmd.Action = func(c *cli.Context) error { got = endpoint(c); return nil }
		}
		if err := app.Run(append([]string{"glimpse"}, tc.args...)); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got != tc.want {
			t.Errorf("OS_IMAGE_URL=%q glimpse %v: endpoint %q, want %q", tc.env, tc.args, got, tc.want)
		}
	}
}

// glimpse --version and glimpse version print the same.
func TestVersionFlagMatchesCommand(t *testing.T) {
	t.Parallel()
	_, flag, c1 := runMain(t, nil, "--version")
	_, cmd, c2 := runMain(t, nil, "version")
	if c1 != 0 || c2 != 0 || flag != cmd || !strings.HasPrefix(cmd, "glimpse ") {
		t.Fatalf("--version (exit %d) %q, version (exit %d) %q: want the same", c1, flag, c2, cmd)
	}
}

// Help shows each default once.
func TestHelpShowsDefaultsOnce(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"serve", "image-create", "image-list", "convert", "scrub", "gc"} {
		_, out, code := runMain(t, nil, c, "--help")
		if code != 0 {
			t.Fatalf("%s --help: exit %d", c, code)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Count(line, "(default") > 1 || strings.Contains(line, "(default: false)") {
				t.Errorf("%s --help: %q", c, line)
			}
		}
	}
}

// A user other than root who cannot use the mount point is told why, in
// words, before anything is mounted.
func TestServeNonRootMountPointSaysWhy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the daemon as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv")
	}
	// A copy of this binary, and a home, that nobody can reach.
	dir, err := os.MkdirTemp("", "glimpse-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	exe, _ := os.Executable()
	bin := filepath.Join(dir, "glimpse")
	if b, err := os.ReadFile(exe); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatal("copy the test binary", err)
	}
	home := filepath.Join(dir, "home")
	rootOwned := filepath.Join(dir, "root-owned")
	os.Mkdir(home, 0o755)
	os.Mkdir(rootOwned, 0o755)
	exec.Command("chown", nobody.Uid, home).Run()
	for _, tc := range []struct{ mount, want string }{
		{filepath.Join(rootOwned, "mnt"), "does not exist and uid " + nobody.Uid + " may not create it in " + rootOwned},
		{rootOwned, "is not writable by uid " + nobody.Uid},
	} {
		cmd := exec.Command("setpriv", "--reuid", nobody.Uid, "--regid", nobody.Gid, "--clear-groups",
			bin, "serve", "--mount", tc.mount, "--listen", "127.0.0.1:0")
		cmd.Env = []string{"GLIMPSE_RUN_MAIN=1", "HOME=" + home, "PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err == nil || !strings.Contains(lines[len(lines)-1], tc.want) {
			t.Errorf("serve --mount %s as nobody: %v\n%s\nwant the last line to say %q", tc.mount, err, out, tc.want)
		}
	}
}
