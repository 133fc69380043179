package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// parseServe runs `glimpse serve ARGS` with the daemon replaced by a
// function that keeps the options it would have run with.
func parseServe(t *testing.T, args ...string) (serveOptions, error) {
	t.Helper()
	var got serveOptions
	app := &cli.App{
		Name:           "glimpse",
		Commands:       []*cli.Command{serveCommandRunning(func(_ context.Context, o serveOptions) error { got = o; return nil })},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	err := app.Run(append([]string{"glimpse", "serve"}, args...))
	return got, err
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "glimpse.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Each level of precedence wins over the ones below it: flag over
// environment over file over default.
func TestServeSettingPrecedence(t *testing.T) {
	cfg := writeConfig(t, `
data: /from/file
mount: /mnt/from-file
listen: 127.0.0.1:1111
log-level: warn
image-size-cap: 4096   # an alias works as a key too
`)
	t.Setenv("GLIMPSE_DATA", "/from/env")
	t.Setenv("GLIMPSE_MOUNT", "/mnt/from-env")
	o, err := parseServe(t, "--config", cfg, "--data", "/from/flag")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ setting, got, want string }{
		{"data (flag, env, file)", o.data, "/from/flag"},
		{"mount (env, file)", o.mount, "/mnt/from-env"},
		{"listen (file)", o.listen, "127.0.0.1:1111"},
		{"log-level (file)", o.logLevel, "warn"},
		{"fs-project (default)", o.fsProject, "admin"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.setting, c.got, c.want)
		}
	}
	if o.maxImageSize != 4096 {
		t.Errorf("max-image-size from the file = %d, want 4096", o.maxImageSize)
	}
}

// The config file itself may come from the environment, and an empty
// variable is a setting (” switches the mount off), not an absence.
func TestServeConfigFromEnvironment(t *testing.T) {
	cfg := writeConfig(t, "mount: /mnt/from-file\nallow-other: true\n")
	t.Setenv("GLIMPSE_CONFIG", cfg)
	t.Setenv("GLIMPSE_MOUNT", "")
	o, err := parseServe(t)
	if err != nil {
		t.Fatal(err)
	}
	if o.mount != "" {
		t.Errorf("mount = %q, want '' from the empty GLIMPSE_MOUNT", o.mount)
	}
	if !o.allowOther {
		t.Error("allow-other: true in the file was not applied")
	}
}

func TestServeConfigErrors(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"unknown key", "lisen: 127.0.0.1:1\n", `unknown setting "lisen"`},
		{"bad value", "max-image-size: lots\n", "max-image-size"},
		{"list value", "data: [a, b]\n", "want a single value"},
		{"not yaml", "data: [\n", "yaml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseServe(t, "--config", writeConfig(t, c.text))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want one mentioning %q", err, c.want)
			}
		})
	}
	if _, err := parseServe(t, "--config", "/nonexistent/glimpse.yaml"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing config file: error = %v", err)
	}
}

// Every serve flag, including ones added later, has its GLIMPSE_ variable
// and a help category.
func TestServeFlagsHaveEnvAndCategory(t *testing.T) {
	for _, f := range serveCommand().Flags {
		name := f.Names()[0]
		env, ok := f.(interface{ GetEnvVars() []string })
		if !ok || len(env.GetEnvVars()) == 0 || env.GetEnvVars()[0] != envName(name) {
			t.Errorf("--%s: environment variables %v, want %s", name, env.GetEnvVars(), envName(name))
		}
		if cat, ok := f.(cli.CategorizableFlag); !ok || cat.GetCategory() == "" {
			t.Errorf("--%s has no help category", name)
		}
	}
}

// The Keystone settings come from flags, GLIMPSE_KEYSTONE_* and the file
// like every other, with keystonemiddleware's defaults.
func TestServeKeystoneSettings(t *testing.T) {
	cfg := writeConfig(t, `
keystone-url: http://keystone.example:5000/v3
keystone-user: glimpse
keystone-project: service
keystone-token-cache-time: 1m
`)
	t.Setenv("GLIMPSE_KEYSTONE_PASSWORD", "from-env")
	o, err := parseServe(t, "--config", cfg, "--keystone-project", "svc")
	if err != nil {
		t.Fatal(err)
	}
	k := o.keystone
	if k.URL != "http://keystone.example:5000/v3" || k.User != "glimpse" || k.Password != "from-env" ||
		k.Project != "svc" || k.Domain != "Default" || k.Cache != time.Minute || k.Timeout != 10*time.Second {
		t.Errorf("keystone settings: %+v", k)
	}
	if o, _ := parseServe(t); o.keystone.Cache != 5*time.Minute {
		t.Errorf("default token cache time %v, want keystonemiddleware's 300 s", o.keystone.Cache)
	}
}

// The limits of issue 18 are settings like any other: file, variable,
// default.
func TestServeUploadAndReserveSettings(t *testing.T) {
	o, err := parseServe(t)
	if err != nil {
		t.Fatal(err)
	}
	if o.maxUploads != 64 || o.dataReserve != 64<<20 || o.allowOtherWithAuth {
		t.Fatalf("defaults: max-uploads %d, data-reserve %d, allow-other-with-auth %v", o.maxUploads, o.dataReserve, o.allowOtherWithAuth)
	}
	t.Setenv("GLIMPSE_MAX_UPLOADS", "8")
	o, err = parseServe(t, "--config", writeConfig(t, "data-reserve: 1048576\nallow-other-with-auth: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o.maxUploads != 8 || o.dataReserve != 1<<20 || !o.allowOtherWithAuth {
		t.Fatalf("set: max-uploads %d, data-reserve %d, allow-other-with-auth %v", o.maxUploads, o.dataReserve, o.allowOtherWithAuth)
	}
}
