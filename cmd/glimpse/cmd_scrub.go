package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/backend/metered"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// scrub and gc run in the daemon when it serves (asked over REST, admin
// only), or, with --data, on the registry and store directly while the
// daemon is stopped: badger lets one process open the registry, so the
// direct way cannot run beside a daemon and says so.

func adminTargetFlags() []cli.Flag {
	return append(connectionFlags(),
		&cli.StringFlag{Name: "data", Usage: "work on the registry in DIR directly (the daemon must be stopped) instead of asking the daemon over REST"},
		&cli.StringFlag{Name: "store", Usage: "with --data: the store, as serve's --store (default DATA/images)", EnvVars: []string{"GLIMPSE_STORE"}},
		&cli.StringFlag{Name: "registry", Usage: "with --data: the registry, as serve's --registry (an etcd one is refused while any daemon holds a lease on it)", EnvVars: []string{"GLIMPSE_REGISTRY"}},
		jsonFlag(),
	)
}

func scrubCommand() *cli.Command {
	return &cli.Command{
		Name:  "scrub",
		Usage: "re-hash every stored image against the registry and report damage",
		Description: `Reads the content of every active and deactivated image (streaming, one
   at a time) and compares its size, md5 and sha512 with the registry; also
   reports images stuck in flight and stored objects no image owns. Exits 1
   when it finds a problem.

   --mark deactivates each image whose content is missing or damaged (so
   nobody consumes it; admins can still download it) and sets its property
   glimpse_scrub_error to the reason. Nothing is deleted.

   Examples:
   glimpse scrub                      (asks the daemon at --os-image-url)
   glimpse scrub --mark --json
   glimpse scrub --data /srv/glimpse  (daemon stopped)`,
		Flags: append(adminTargetFlags(),
			&cli.BoolFlag{Name: "mark", Usage: "deactivate damaged images and say why in glimpse_scrub_error"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef(c, "scrub takes no arguments (got %q)", c.Args().First())
			}
			var rep lifecycle.CheckReport
			err := onTarget(c, func(ctx context.Context, svc *lifecycle.Service) (err error) {
				rep, err = svc.Scrub(ctx, dataOwner(), c.Bool("mark"))
				return err
			}, func(ctx context.Context) error {
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				return cl.Scrub(ctx, c.Bool("mark"), &rep)
			})
			if err != nil {
				return fmt.Errorf("scrub: %w", err)
			}
			if c.Bool("json") {
				printJSON(c.App.Writer, rep)
			} else {
				printCheckReport(c.App.Writer, rep)
			}
			if n := len(rep.Problems); n > 0 {
				return fmt.Errorf("scrub found %d problem(s)", n)
			}
			return nil
		},
	}
}

func printCheckReport(w io.Writer, rep lifecycle.CheckReport) {
	for _, p := range rep.Problems {
		who := p.Image
		if who == "" {
			who = "-"
		}
		marked := ""
		if p.Marked {
			marked = " (deactivated)"
		}
		fmt.Fprintf(w, "%-8s image %s key %s: %s%s\n", p.Kind, who, p.Key, p.Detail, marked)
	}
	fmt.Fprintf(w, "%d images, %d stored objects, %d bytes hashed, %d problem(s)\n",
		rep.Images, rep.Objects, rep.BytesHashed, len(rep.Problems))
}

// dataOwner is who works on the registry under --data directly: whoever
// can open its files (root, or the daemon's user) is its admin.
func dataOwner() lifecycle.Principal { return lifecycle.Principal{Project: "admin", Admin: true} }

// onTarget runs direct on the registry and store under --data, or remote
// against the daemon.
func onTarget(c *cli.Context, direct func(context.Context, *lifecycle.Service) error, remote func(context.Context) error) error {
	data := c.String("data")
	if data == "" {
		if c.IsSet("store") {
			return errors.New("--store goes with --data")
		}
		return remote(c.Context)
	}
	data, err := filepath.Abs(data)
	if err != nil {
		return err
	}
	registry := c.String("registry")
	if registry == "" {
		if _, err := os.Stat(filepath.Join(data, "registry")); err != nil {
			return fmt.Errorf("--data %s holds no registry: %w", data, err)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// The registry first: badger's lock, or no lease on an etcd one,
	// proves no daemon runs on it before the store (and its spool) is
	// touched.
	db, _, err := openRegistry(c.Context, registry, data, log)
	if err != nil {
		return fmt.Errorf("%w (is glimpse serve running on it? then leave out --data and it is asked over REST)", err)
	}
	defer db.Close()
	store, err := meta.Open(db)
	if err != nil {
		return err
	}
	defer store.Close()
	daemons, err := store.Daemons(c.Context)
	if err != nil {
		return err
	}
	if len(daemons) > 0 {
		d := daemons[0]
		return fmt.Errorf("%d glimpse daemon(s) hold a lease on this registry (%s pid %d, since %s, and maybe others): stop them, or leave out --data and ask one over REST",
			len(daemons), d.Host, d.PID, d.Started.Format(time.RFC3339))
	}
	be, _, err := openStore(c.Context, c.String("store"), data, defaultStoreTimeout, 0, metered.NewMetrics(nil))
	if err != nil {
		return err
	}
	defer be.Close()
	return direct(c.Context, lifecycle.New(lifecycle.Config{Store: store, Backend: be, Logger: log}))
}
