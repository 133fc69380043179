package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/api/client"
)

// The image-* commands are clients of a glimpse daemon's REST listener
// (or any Glance v2 endpoint), with the glance CLI's flags and output.

// imageFieldFlags are the settable fields shared by image-create and
// image-update.
func imageFieldFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Usage: "image name"},
		&cli.StringFlag{Name: "disk-format", Usage: "ami, ari, aki, vhd, vhdx, vmdk, raw, qcow2, vdi, iso, ploop"},
		&cli.StringFlag{Name: "container-format", Usage: "ami, ari, aki, bare, ovf, ova, docker, compressed"},
		&cli.StringFlag{Name: "visibility", Usage: "public, private, shared or community"},
		&cli.BoolFlag{Name: "is-public", Usage: "make the image public (same as --visibility public)"},
		&cli.Int64Flag{Name: "min-disk", Usage: "minimum disk size in GB to boot the image"},
		&cli.Int64Flag{Name: "min-ram", Usage: "minimum RAM in MB to boot the image"},
		&cli.StringFlag{Name: "protected", Usage: "True or False: protected images cannot be deleted"},
		&cli.StringSliceFlag{Name: "property", Usage: "custom property KEY=VALUE (repeatable)"},
	}
}

// imageFields collects the fields given on the command line.
func imageFields(c *cli.Context) (map[string]any, error) {
	f := map[string]any{}
	for _, k := range []string{"name", "disk-format", "container-format", "visibility"} {
		if c.IsSet(k) {
			f[strings.ReplaceAll(k, "-", "_")] = c.String(k)
		}
	}
	if c.Bool("is-public") {
		if v, ok := f["visibility"]; ok && v != "public" {
			return nil, usagef(c, "--is-public contradicts --visibility %s", v)
		}
		f["visibility"] = "public"
	}
	for _, k := range []string{"min-disk", "min-ram"} {
		if c.IsSet(k) {
			f[strings.ReplaceAll(k, "-", "_")] = c.Int64(k)
		}
	}
	if c.IsSet("protected") {
		b, err := strconv.ParseBool(c.String("protected"))
		if err != nil {
			return nil, usagef(c, "--protected %q: want True or False", c.String("protected"))
		}
		f["protected"] = b
	}
	for _, kv := range c.StringSlice("property") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef(c, "--property %q: want KEY=VALUE", kv)
		}
		f[k] = v
	}
	return f, nil
}

func imageCommands() []*cli.Command {
	return []*cli.Command{
		imageCreateCommand(), imageListCommand(), imageShowCommand(), imageUpdateCommand(),
		imageDownloadCommand(), imageDeleteCommand(), imageTagUpdateCommand(),
		imageActionCommand("image-deactivate", "deactivate an image (admins): its data can no longer be downloaded", (*client.Client).Deactivate),
		imageActionCommand("image-reactivate", "reactivate a deactivated image (admins)", (*client.Client).Reactivate),
	}
}

func imageCreateCommand() *cli.Command {
	return &cli.Command{
		Name:      "image-create",
		Category:  "images",
		Usage:     "create an image, optionally uploading its data (--file), registering it where it stays (--location) or importing a copy (--copy-from)",
		ArgsUsage: " ",
		Description: `Examples:
   glimpse image-create --name myimage --disk-format=raw --container-format=bare --file disk.img --is-public
   glimpse image-create --name cirros --disk-format qcow2 --container-format bare --location https://example.com/cirros.qcow2
   glimpse image-create --name cirros --disk-format qcow2 --container-format bare --copy-from https://example.com/cirros.qcow2`,
		Flags: append(append(connectionFlags(), imageFieldFlags()...),
			&cli.StringFlag{Name: "id", Usage: "image id (a UUID; default: a new one)"},
			&cli.StringSliceFlag{Name: "tag", Usage: "tag (repeatable)"},
			&cli.StringFlag{Name: "file", Usage: "upload this file as the image's data"},
			&cli.StringFlag{Name: "location", Usage: "the data stays at this http(s) URL and is read from there (an HTTP location)"},
			&cli.StringFlag{Name: "copy-from", Usage: "import a copy of the data from this http(s) URL (web-download)"},
			jsonFlag(), progressFlag()),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef(c, "image-create takes no arguments (got %q)", c.Args().First())
			}
			fields, err := imageFields(c)
			if err != nil {
				return err
			}
			if c.IsSet("id") {
				fields["id"] = c.String("id")
			}
			if tags := c.StringSlice("tag"); len(tags) > 0 {
				fields["tags"] = tags
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			src := imageSource{file: c.String("file"), location: c.String("location"), copyFrom: c.String("copy-from")}
			return runImageCreate(c.Context, c.App.Writer, cl, fields, src, c.Bool("json"), showProgress(c))
		},
	}
}

// imageSource is where a new image's data comes from: at most one of
// them is set.
type imageSource struct {
	file, location, copyFrom string
}

func runImageCreate(ctx context.Context, stdout io.Writer, cl *client.Client, fields map[string]any, src imageSource, asJSON, progress bool) error {
	file, location, copyFrom := src.file, src.location, src.copyFrom
	given := 0
	for _, s := range []string{file, location, copyFrom} {
		if s != "" {
			given++
		}
	}
	if given > 1 {
		return errors.New("give one of --file, --location and --copy-from")
	}
	// A location's format is detected from its content if not given.
	if (file != "" || copyFrom != "") && (fields["disk_format"] == nil || fields["container_format"] == nil) {
		return errors.New("must provide --disk-format and --container-format with --file or --copy-from")
	}
	var f *os.File
	var size int64 = -1
	if file != "" {
		var err error
		if f, err = os.Open(file); err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
	}
	img, err := cl.Create(ctx, fields)
	if err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	id := img.ID()
	switch {
	case f != nil:
		var r io.Reader = f
		if progress {
			p := newProgressReader(f, size, "upload", os.Stderr)
			defer p.finish()
			r = p
		}
		if err := cl.Upload(ctx, id, r, size); err != nil {
			return fmt.Errorf("upload data of image %s: %w", id, err)
		}
	case location != "":
		if _, err := cl.AddLocation(ctx, id, location, nil); err != nil {
			return fmt.Errorf("add location %s to image %s: %w", location, id, err)
		}
	case copyFrom != "":
		if err := cl.ImportWebDownload(ctx, id, copyFrom); err != nil {
			return fmt.Errorf("import image %s from %s: %w", id, copyFrom, err)
		}
		if img, err = waitImported(ctx, cl, id); err != nil {
			return err
		}
	}
	if img, err = cl.Get(ctx, id); err != nil {
		return err
	}
	if st := img.Str("status"); st == "killed" {
		return fmt.Errorf("image %s was refused: %s", id, img.Str("glimpse.error"))
	}
	return printImage(stdout, img, asJSON)
}

// waitImported polls image id until its import settles.
func waitImported(ctx context.Context, cl *client.Client, id string) (client.Image, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		img, err := cl.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if st := img.Str("status"); st != "importing" && st != "queued" {
			return img, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

func imageListCommand() *cli.Command {
	return &cli.Command{
		Name:      "image-list",
		Category:  "images",
		Usage:     "list images (ID and name; --json for every field)",
		ArgsUsage: " ",
		Flags: append(connectionFlags(),
			&cli.StringFlag{Name: "name", Usage: "filter by name (Glance syntax: NAME or in:A,B)"},
			&cli.StringFlag{Name: "status", Usage: "filter by status"},
			&cli.StringFlag{Name: "visibility", Usage: "public, private, shared, community or all"},
			&cli.StringFlag{Name: "member-status", Usage: "images shared with you by your membership: pending, accepted (default), rejected or all"},
			&cli.StringFlag{Name: "owner", Usage: "filter by owner project"},
			&cli.StringFlag{Name: "disk-format", Usage: "filter by disk format"},
			&cli.StringFlag{Name: "container-format", Usage: "filter by container format"},
			&cli.StringSliceFlag{Name: "tag", Usage: "images with this tag (repeatable: all of them)"},
			&cli.StringSliceFlag{Name: "property-filter", Usage: "KEY=VALUE custom property filter (repeatable)"},
			&cli.StringFlag{Name: "sort-key", Usage: "name, status, container_format, disk_format, size, id, created_at, updated_at", Value: "name"},
			&cli.StringFlag{Name: "sort-dir", Usage: "asc or desc", Value: "asc"},
			&cli.StringFlag{Name: "sort", Usage: "KEY[:DIR],... (overrides --sort-key/--sort-dir)"},
			&cli.IntFlag{Name: "limit", Usage: "at most this many images (0: all)"},
			&cli.IntFlag{Name: "page-size", Usage: "images per request", Value: 200},
			jsonFlag()),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef(c, "image-list takes no arguments (got %q)", c.Args().First())
			}
			q := url.Values{}
			for _, k := range []string{"name", "status", "visibility", "member-status", "owner", "disk-format", "container-format"} {
				if c.IsSet(k) {
					q.Set(strings.ReplaceAll(k, "-", "_"), c.String(k))
				}
			}
			for _, t := range c.StringSlice("tag") {
				q.Add("tag", t)
			}
			for _, kv := range c.StringSlice("property-filter") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return usagef(c, "--property-filter %q: want KEY=VALUE", kv)
				}
				q.Set(k, v)
			}
			if c.IsSet("sort") {
				q.Set("sort", c.String("sort"))
			} else {
				q.Set("sort_key", c.String("sort-key"))
				q.Set("sort_dir", c.String("sort-dir"))
			}
			if ps := c.Int("page-size"); ps > 0 {
				q.Set("limit", strconv.Itoa(ps))
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			var imgs []client.Image
			if err := cl.List(c.Context, q, c.Int("limit"), func(img client.Image) error {
				imgs = append(imgs, img)
				return nil
			}); err != nil {
				return fmt.Errorf("list images: %w", err)
			}
			if c.Bool("json") {
				if imgs == nil {
					imgs = []client.Image{}
				}
				return printJSON(c.App.Writer, imgs)
			}
			rows := [][]string{}
			for _, img := range imgs {
				rows = append(rows, []string{img.ID(), img.Str("name")})
			}
			fmt.Fprint(c.App.Writer, table([]string{"ID", "Name"}, rows))
			return nil
		},
	}
}

func imageShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "image-show",
		Category:  "images",
		Usage:     "show an image's properties",
		ArgsUsage: "IMAGE_ID",
		Flags:     append(connectionFlags(), jsonFlag()),
		Action: func(c *cli.Context) error {
			id, cl, err := oneImageClient(c)
			if err != nil {
				return err
			}
			return printImageNow(c, cl, id)
		},
	}
}

func imageUpdateCommand() *cli.Command {
	return &cli.Command{
		Name:      "image-update",
		Category:  "images",
		Usage:     "change an image's properties",
		ArgsUsage: "IMAGE_ID",
		Description: `Examples:
   glimpse image-update --name new-name --min-ram 512 --property os_distro=debian IMAGE_ID
   glimpse image-update --remove-property os_distro IMAGE_ID`,
		Flags: append(append(connectionFlags(), imageFieldFlags()...),
			&cli.StringSliceFlag{Name: "remove-property", Usage: "remove this custom property (repeatable)"},
			jsonFlag()),
		Action: func(c *cli.Context) error {
			id, err := oneImageArg(c)
			if err != nil {
				return err
			}
			fields, err := imageFields(c)
			if err != nil {
				return err
			}
			keys := make([]string, 0, len(fields))
			for k := range fields {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var ops []client.PatchOp
			for _, k := range keys {
				// "add" sets a property whether or not it exists.
				ops = append(ops, client.PatchOp{Op: "add", Path: "/" + pointerEscape(k), Value: fields[k]})
			}
			for _, k := range c.StringSlice("remove-property") {
				ops = append(ops, client.PatchOp{Op: "remove", Path: "/" + pointerEscape(k)})
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			img, err := cl.Patch(c.Context, id, ops)
			if err != nil {
				return fmt.Errorf("update image %s: %w", id, err)
			}
			return printImage(c.App.Writer, img, c.Bool("json"))
		},
	}
}

func pointerEscape(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

func imageDownloadCommand() *cli.Command {
	return &cli.Command{
		Name:      "image-download",
		Category:  "images",
		Usage:     "download an image's data to a file (or to stdout when it is not a terminal)",
		ArgsUsage: "IMAGE_ID",
		Flags:     append(connectionFlags(), &cli.StringFlag{Name: "file", Usage: "write the data here"}, progressFlag()),
		Action: func(c *cli.Context) error {
			id, cl, err := oneImageClient(c)
			if err != nil {
				return err
			}
			return runImageDownload(c.Context, c.App.Writer, cl, id, c.String("file"), showProgress(c))
		},
	}
}

func runImageDownload(ctx context.Context, stdout io.Writer, cl *client.Client, id, file string, progress bool) (err error) {
	var out io.Writer = stdout
	if f, ok := stdout.(*os.File); ok && file == "" && isTerminal(f) {
		return errors.New("refusing to write image data to a terminal: use --file or redirect stdout")
	}
	var tmp *os.File
	rc, size, sum, err := cl.Download(ctx, id)
	if err != nil {
		return err
	}
	defer rc.Close()
	if file != "" {
		// Write beside the target and rename, so a failed download leaves
		// no partial file under the requested name.
		tmp, err = os.CreateTemp(dirOf(file), ".glimpse-download-*")
		if err != nil {
			return err
		}
		defer func() {
			if err != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		out = tmp
	}
	h := md5.New()
	var r io.Reader = rc
	if progress {
		p := newProgressReader(rc, size, "download", os.Stderr)
		defer p.finish()
		r = p
	}
	if _, err = io.CopyBuffer(io.MultiWriter(out, h), r, make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("download image %s: %w", id, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); sum != "" && got != sum {
		return fmt.Errorf("download image %s: corrupt data: md5 %s, server says %s", id, got, sum)
	}
	if tmp != nil {
		if err = tmp.Close(); err != nil {
			return err
		}
		if err = os.Rename(tmp.Name(), file); err != nil {
			return err
		}
	}
	return nil
}

func dirOf(path string) string {
	if i := strings.LastIndex(path, "/"); i >= 0 {
		return path[:i+1]
	}
	return "."
}

func imageDeleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "image-delete",
		Category:  "images",
		Usage:     "delete images",
		ArgsUsage: "IMAGE_ID [IMAGE_ID...]",
		Flags:     connectionFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef(c, "image-delete needs at least one image id")
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			var failed []string
			for _, id := range c.Args().Slice() {
				if err := cl.Delete(c.Context, id); err != nil {
					fmt.Fprintf(os.Stderr, "glimpse: delete image %s: %v\n", id, err)
					failed = append(failed, id)
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d of %d images not deleted", len(failed), c.NArg())
			}
			return nil
		},
	}
}

func imageTagUpdateCommand() *cli.Command {
	return &cli.Command{
		Name:      "image-tag-update",
		Category:  "images",
		Usage:     "add a tag to an image",
		ArgsUsage: "IMAGE_ID TAG",
		Flags:     append(connectionFlags(), jsonFlag()),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usagef(c, "image-tag-update needs IMAGE_ID and TAG")
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			id := c.Args().Get(0)
			if err := cl.AddTag(c.Context, id, c.Args().Get(1)); err != nil {
				return fmt.Errorf("tag image %s: %w", id, err)
			}
			img, err := cl.Get(c.Context, id)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printImage(c.App.Writer, img, true)
			}
			// glance prints the image's id and tags.
			printTags(c.App.Writer, img)
			return nil
		},
	}
}

func imageActionCommand(name, usage string, do func(*client.Client, context.Context, string) error) *cli.Command {
	return &cli.Command{
		Name:      name,
		Category:  "images",
		Usage:     usage,
		ArgsUsage: "IMAGE_ID",
		Flags:     connectionFlags(),
		Action: func(c *cli.Context) error {
			id, cl, err := oneImageClient(c)
			if err != nil {
				return err
			}
			if err := do(cl, c.Context, id); err != nil {
				return fmt.Errorf("%s %s: %w", strings.TrimPrefix(name, "image-"), id, err)
			}
			return nil
		},
	}
}
