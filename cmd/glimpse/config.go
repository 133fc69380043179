package main

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// Each serve setting comes, in this order of precedence, from its flag
// (--listen), its environment variable (GLIMPSE_LISTEN), the YAML file
// named by --config (listen: ...), or its default. urfave/cli resolves the
// first two; applyConfigFile fills in what neither set.

// envName is the environment variable of flag name: GLIMPSE_ and the name
// in capitals with dashes as underscores (max-image-size:
// GLIMPSE_MAX_IMAGE_SIZE).
func envName(flag string) string {
	return "GLIMPSE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// serveFlagCategories groups serve's flags in --help. A flag missing here
// keeps the Category it was declared with.
var serveFlagCategories = map[string]string{
	"config":                     "Configuration",
	"data":                       "Storage",
	"store":                      "Storage",
	"store-timeout":              "Storage",
	"max-image-size":             "Limits",
	"mount":                      "Mount",
	"fs-project":                 "Mount",
	"uid":                        "Mount",
	"gid":                        "Mount",
	"allow-other":                "Mount",
	"listen":                     "REST listener",
	"auth-tokens":                "REST listener",
	"tls-cert":                   "REST listener",
	"tls-key":                    "REST listener",
	"web-download-allow-private": "REST listener",
	"read-header-timeout":        "REST listener",
	"idle-timeout":               "REST listener",
	"body-stall-timeout":         "REST listener",
	"quota-images":               "Limits",
	"quota-uploading":            "Limits",
	"quota-bytes":                "Limits",
	"log-level":                  "Logs and debugging",
	"log-format":                 "Logs and debugging",
	"debug-pprof":                "Logs and debugging",
	"debug-fuse":                 "Logs and debugging",
}

// withEnvAndCategory gives every flag its GLIMPSE_ variable (unless it
// declares its own) and its help category. urfave/cli's flag types share
// the EnvVars and Category fields but no interface to set them, hence the
// reflection; it runs once, when the command is built.
func withEnvAndCategory(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		v := reflect.ValueOf(f).Elem()
		name := f.Names()[0]
		if env := v.FieldByName("EnvVars"); env.IsValid() && env.Len() == 0 {
			env.Set(reflect.ValueOf([]string{envName(name)}))
		}
		if cat := v.FieldByName("Category"); cat.IsValid() && cat.String() == "" {
			cat.SetString(serveFlagCategories[name])
		}
	}
	return flags
}

// applyConfigFile sets, from the YAML file named by --config, every flag
// that neither the command line nor the environment set. Keys are flag
// names; an unknown key or a value that is not a scalar is an error, so a
// typo does not pass silently.
func applyConfigFile(c *cli.Context) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(raw, &settings); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	primary := map[string]string{} // every name and alias -> the flag's name
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			primary[n] = f.Names()[0]
		}
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		name, ok := primary[key]
		if !ok || name == "config" {
			return fmt.Errorf("--config %s: unknown setting %q (settings are serve's flag names: listen, mount, data, ...)", path, key)
		}
		var value string
		switch v := settings[key].(type) {
		case nil:
			value = "" // "mount:" with no value switches the mount off
		case string, bool, int, int64, uint64, float64:
			value = fmt.Sprint(v)
		default:
			return fmt.Errorf("--config %s: %s: want a single value, got %T", path, key, v)
		}
		if c.IsSet(name) {
			continue // the flag or its environment variable wins
		}
		if err := c.Set(name, value); err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, key, err)
		}
	}
	return nil
}
