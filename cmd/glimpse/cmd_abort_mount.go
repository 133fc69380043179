package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/fs"
)

// abortMountCommand is what scripts/glimpse.service runs after the daemon
// stopped: a daemon killed while the kernel held one of its threads can
// leave a FUSE connection nobody aborts, hidden by the unit's lazy
// unmount, with its clients hung until it is aborted.
func abortMountCommand() *cli.Command {
	return &cli.Command{
		Name:      "abort-mount",
		Usage:     "abort the FUSE connection a dead daemon left on a mount point, then detach it",
		ArgsUsage: "MOUNTPOINT",
		Description: `Aborts the connection recorded for MOUNTPOINT by the daemon that mounted
it, if that daemon no longer serves (gone, a zombie or stopped), even when a
lazy unmount hid it from mountinfo; then detaches what is left on the mount
point. A serving daemon's mount is left alone. glimpse serve does the same
before it mounts.`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("abort-mount takes one mount point")
			}
			log, err := newLogger(os.Stderr, "info", "text")
			if err != nil {
				return err
			}
			aborted, err := fs.AbortDeadConnection(c.Args().First(), log)
			if err != nil {
				return err
			}
			if aborted {
				fmt.Fprintf(c.App.Writer, "aborted the dead daemon's connection on %s\n", c.Args().First())
			}
			return nil
		},
	}
}
