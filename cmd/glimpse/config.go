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

// withEnv gives every flag its GLIMPSE_ variable unless it declares its
// own. urfave/cli's flag types share the EnvVars field but no interface to
// set it, hence the reflection; it runs once, when the command is built.
func withEnv(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		v := reflect.ValueOf(f).Elem()
		if env := v.FieldByName("EnvVars"); env.IsValid() && env.Len() == 0 {
			env.Set(reflect.ValueOf([]string{envName(f.Names()[0])}))
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
