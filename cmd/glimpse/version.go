package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/backend/rbd"
)

// buildVersion describes this binary from what the Go toolchain recorded
// in it: the module version (set by go install MODULE@VERSION; "(devel)"
// for a build in a checkout), the VCS revision when built in one, the Go
// version, and whether Ceph RBD support was compiled in.
func buildVersion() string {
	version, revision, goVersion := "(unknown)", "", ""
	if info, ok := debug.ReadBuildInfo(); ok {
		version, goVersion = info.Main.Version, info.GoVersion
		var modified bool
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if revision != "" && modified {
			revision += "-dirty"
		}
	}
	var b strings.Builder
	b.WriteString(version)
	if revision != "" {
		fmt.Fprintf(&b, " (revision %s)", revision)
	}
	fmt.Fprintf(&b, "\n%s, ceph rbd: %s", goVersion, map[bool]string{true: "yes", false: "no (build with -tags ceph,pacific)"}[rbd.Enabled])
	return b.String()
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the VCS revision, the Go version and whether RBD support is built in",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef(c, "version takes no arguments")
			}
			return printVersion(c)
		},
	}
}

// printVersion is what both `glimpse version` and `glimpse --version` print.
func printVersion(c *cli.Context) error {
	_, err := fmt.Fprintln(c.App.Writer, "glimpse", buildVersion())
	return err
}
