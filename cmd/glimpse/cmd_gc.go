package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/lifecycle"
)

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove stored objects no image owns and stale incomplete writes",
		Description: `Removes from the store every object that no image owns (left by a
   crash, or by a store that was away when an image was deleted) and every
   incomplete write that no upload in flight owns (S3 multipart uploads,
   Swift segments, RBD and local partial images). Safe while the daemon
   serves: uploads in flight are spared.

   --dry-run lists the orphans and removes nothing (incomplete writes are
   not listed).

   Examples:
   glimpse gc                         (asks the daemon at --os-image-url)
   glimpse gc --dry-run
   glimpse gc --data /srv/glimpse     (daemon stopped)`,
		Flags: append(adminTargetFlags(),
			&cli.BoolFlag{Name: "dry-run", Usage: "only list the orphaned objects"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef(c, "gc takes no arguments (got %q)", c.Args().First())
			}
			var rep lifecycle.GCReport
			err := onTarget(c, func(ctx context.Context, svc *lifecycle.Service) (err error) {
				rep, err = svc.GC(ctx, dataOwner(), c.Bool("dry-run"))
				return err
			}, func(ctx context.Context) error {
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				return cl.GC(ctx, c.Bool("dry-run"), &rep)
			})
			if err != nil {
				return fmt.Errorf("gc: %w", err)
			}
			if c.Bool("json") {
				printJSON(c.App.Writer, rep)
			} else {
				printGCReport(c.App.Writer, rep)
			}
			return nil
		},
	}
}

func printGCReport(w io.Writer, rep lifecycle.GCReport) {
	verb := "removed"
	if rep.DryRun {
		verb = "would remove"
	}
	for _, key := range rep.Orphans {
		fmt.Fprintf(w, "%s orphan %s\n", verb, key)
	}
	fmt.Fprintf(w, "%s %d orphaned object(s)", verb, len(rep.Orphans))
	if rep.IncompleteAborted {
		fmt.Fprint(w, "; stale incomplete writes aborted")
	}
	fmt.Fprintln(w)
}
