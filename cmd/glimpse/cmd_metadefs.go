package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/api/client"
	"github.com/glimpse-project/glimpse/lifecycle/metadefs"
	"github.com/glimpse-project/glimpse/meta"
	"github.com/glimpse-project/glimpse/meta/kv"
)

func metadefsCommand() *cli.Command {
	return &cli.Command{
		Name:  "metadefs",
		Usage: "manage metadata definitions (Glance's metadefs)",
		Subcommands: []*cli.Command{{
			Name:      "load",
			Usage:     "load Glance's metadata definition files, as glance-manage db_load_metadefs",
			ArgsUsage: "DIR|FILE",
			Description: `Adds the namespace of every *.json file in DIR (Debian's glance-common
   ships Glance's in /etc/glance/metadefs), with its resource type
   associations, properties, objects and tags. A namespace that already
   exists is skipped and left as it is, as glance-manage does without
   --merge. Exits 1 if a file could not be loaded (the others still are).

   The running daemon is asked over REST (as an admin: --os-auth-token);
   with --data, the registry in DIR is written directly while the daemon is
   stopped, the namespaces then owned by "admin" unless a file says.

   Examples:
   glimpse metadefs load /etc/glance/metadefs
   glimpse metadefs load --data /srv/glimpse /etc/glance/metadefs`,
			Flags: append(connectionFlags(),
				&cli.StringFlag{Name: "data", Usage: "load into the registry in DIR directly (the daemon must be stopped) instead of over REST"},
			),
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return errors.New("metadefs load takes one argument: the directory (or file) of definitions")
				}
				files, err := metadefs.DefinitionFiles(c.Args().First())
				if err != nil {
					return fmt.Errorf("metadefs load: %w", err)
				}
				var load func(ctx context.Context, raw []byte) (string, bool, error)
				if data := c.String("data"); data != "" {
					db, err := openLocalRegistry(c.Context, data)
					if err != nil {
						return fmt.Errorf("metadefs load: %w", err)
					}
					defer db.Close()
					md := metadefs.New(db, nil)
					load = func(ctx context.Context, raw []byte) (string, bool, error) { return md.Load(ctx, dataOwner(), raw) }
				} else {
					cl, err := newClient(c)
					if err != nil {
						return fmt.Errorf("metadefs load: %w", err)
					}
					load = func(ctx context.Context, raw []byte) (string, bool, error) { return loadOverREST(ctx, cl, raw) }
				}
				loaded, skipped, failed := 0, 0, 0
				for _, f := range files {
					raw, err := os.ReadFile(f)
					var ns string
					var ok bool
					if err == nil {
						ns, ok, err = load(c.Context, raw)
					}
					switch {
					case err != nil:
						failed++
						fmt.Fprintf(c.App.ErrWriter, "%s: %v\n", f, err)
					case ok:
						loaded++
						fmt.Fprintf(c.App.Writer, "loaded %s\n", ns)
					default:
						skipped++
						fmt.Fprintf(c.App.Writer, "skipped %s: it already exists\n", ns)
					}
				}
				fmt.Fprintf(c.App.Writer, "%d loaded, %d skipped, %d failed\n", loaded, skipped, failed)
				if failed > 0 {
					return fmt.Errorf("metadefs load: %d file(s) failed", failed)
				}
				return nil
			},
		}},
	}
}

// loadOverREST creates the file's namespace; a conflict on a namespace
// that exists is a skip.
func loadOverREST(ctx context.Context, cl *client.Client, raw []byte) (string, bool, error) {
	var head struct {
		Namespace string `json:"namespace"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return "", false, fmt.Errorf("not a definition file: %w", err)
	}
	err := cl.CreateMetadefNamespace(ctx, raw)
	if client.IsStatus(err, http.StatusConflict) {
		if exists, xerr := cl.MetadefNamespaceExists(ctx, head.Namespace); xerr == nil && exists {
			return head.Namespace, false, nil
		}
	}
	return head.Namespace, err == nil, err
}

// openLocalRegistry opens the registry under data for a command that works
// on it directly; badger's lock refuses it while a daemon runs on it.
func openLocalRegistry(ctx context.Context, data string) (kv.KV, error) {
	if _, err := os.Stat(filepath.Join(data, "registry")); err != nil {
		return nil, fmt.Errorf("--data %s holds no registry: %w", data, err)
	}
	db, _, err := openRegistry(ctx, "", data, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, fmt.Errorf("%w (is glimpse serve running on it? then leave out --data and it is asked over REST)", err)
	}
	store, err := meta.Open(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	store.Close()
	return db, nil
}
