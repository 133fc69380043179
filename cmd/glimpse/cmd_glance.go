package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/api/client"
)

// The rest of the glance CLI's image commands that glimpse serves, with
// glance's arguments and output: tags, locations and interoperable
// import.

func glanceParityCommands() []*cli.Command {
	return []*cli.Command{
		imageTagDeleteCommand(),
		locationAddCommand(), locationDeleteCommand(), locationUpdateCommand(),
		imageStageCommand(), imageImportCommand(), imageCreateViaImportCommand(),
	}
}

func imageTagDeleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "image-tag-delete",
		Category:  "images",
		Usage:     "remove a tag from an image",
		ArgsUsage: "IMAGE_ID TAG",
		Flags:     connectionFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usagef(c, "image-tag-delete needs IMAGE_ID and TAG")
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			id := c.Args().Get(0)
			if err := cl.RemoveTag(c.Context, id, c.Args().Get(1)); err != nil {
				return fmt.Errorf("untag image %s: %w", id, err)
			}
			return nil
		},
	}
}

// metadataFlag is location-add/-update's --metadata, a JSON object.
func metadataFlag() cli.Flag {
	return &cli.StringFlag{Name: "metadata", Usage: "metadata of the location, a JSON object", Value: "{}"}
}

func locationMetadata(c *cli.Context) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(c.String("metadata")), &m); err != nil || m == nil {
		return nil, usagef(c, "--metadata %q is not a valid JSON object", c.String("metadata"))
	}
	return m, nil
}

func locationAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "location-add",
		Category:  "locations",
		Usage:     "register the http(s) URL where a queued image's content stays (one location per image)",
		ArgsUsage: "IMAGE_ID",
		Description: `The image becomes active at once and its hashes are computed in the
   background; with --checksum/--hash-algo/--hash-value it stays importing
   until the content is verified against them.

   Example:
   glimpse location-add --url https://example.com/cirros.qcow2 IMAGE_ID`,
		Flags: append(connectionFlags(),
			&cli.StringFlag{Name: "url", Usage: "URL of the location (required)"},
			metadataFlag(),
			&cli.StringFlag{Name: "checksum", Usage: "md5 of the content, to verify it"},
			&cli.StringFlag{Name: "hash-algo", Usage: "algorithm of --hash-value (sha512)"},
			&cli.StringFlag{Name: "hash-value", Usage: "hash of the content, to verify it"},
			jsonFlag()),
		Action: func(c *cli.Context) error {
			id, err := oneImageArg(c)
			if err != nil {
				return err
			}
			if c.String("url") == "" {
				return usagef(c, "location-add needs --url")
			}
			md, err := locationMetadata(c)
			if err != nil {
				return err
			}
			validation := map[string]string{}
			for flag, key := range map[string]string{"checksum": "checksum", "hash-algo": "os_hash_algo", "hash-value": "os_hash_value"} {
				if v := c.String(flag); v != "" {
					validation[key] = v
				}
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			if _, err := cl.AddLocationValidated(c.Context, id, c.String("url"), md, validation); err != nil {
				return fmt.Errorf("add location to image %s: %w", id, err)
			}
			return printImageNow(c, cl, id)
		},
	}
}

func locationDeleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "location-delete",
		Category:  "locations",
		Usage:     "remove locations from an image (glimpse refuses removing an image's only location)",
		ArgsUsage: "IMAGE_ID",
		Flags: append(connectionFlags(),
			&cli.StringSliceFlag{Name: "url", Usage: "URL of a location to remove (repeatable; required)"}),
		Action: func(c *cli.Context) error {
			id, err := oneImageArg(c)
			if err != nil {
				return err
			}
			if len(c.StringSlice("url")) == 0 {
				return usagef(c, "location-delete needs --url")
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			if err := cl.DeleteLocations(c.Context, id, c.StringSlice("url")); err != nil {
				return fmt.Errorf("delete locations of image %s: %w", id, err)
			}
			return nil
		},
	}
}

func locationUpdateCommand() *cli.Command {
	return &cli.Command{
		Name:      "location-update",
		Category:  "locations",
		Usage:     "change the metadata of an image's location",
		ArgsUsage: "IMAGE_ID",
		Flags: append(connectionFlags(),
			&cli.StringFlag{Name: "url", Usage: "URL of the location (required)"},
			metadataFlag(), jsonFlag()),
		Action: func(c *cli.Context) error {
			id, err := oneImageArg(c)
			if err != nil {
				return err
			}
			if c.String("url") == "" {
				return usagef(c, "location-update needs --url")
			}
			md, err := locationMetadata(c)
			if err != nil {
				return err
			}
			if len(md) == 0 {
				fmt.Fprintln(c.App.Writer, "WARNING -- The location's metadata will be updated to an empty JSON object.")
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			if _, err := cl.UpdateLocation(c.Context, id, c.String("url"), md); err != nil {
				return fmt.Errorf("update location of image %s: %w", id, err)
			}
			return printImageNow(c, cl, id)
		},
	}
}

// openData opens --file for an upload, or stdin when it is not a
// terminal, and returns its size (-1 when unknown).
func openData(c *cli.Context) (io.ReadCloser, int64, error) {
	name := c.String("file")
	if name == "" {
		if isTerminal(os.Stdin) {
			return nil, 0, usagef(c, "give the data with --file or on stdin")
		}
		return io.NopCloser(os.Stdin), -1, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, nil
}

// stage uploads the data (--file or stdin) of image id to its staging area.
func stage(c *cli.Context, cl *client.Client, id string) error {
	data, size, err := openData(c)
	if err != nil {
		return err
	}
	defer data.Close()
	var r io.Reader = data
	if showProgress(c) {
		p := newProgressReader(data, size, "stage", os.Stderr)
		defer p.finish()
		r = p
	}
	if err := cl.Stage(c.Context, id, r, size); err != nil {
		return fmt.Errorf("stage data of image %s: %w", id, err)
	}
	return nil
}

func imageStageCommand() *cli.Command {
	return &cli.Command{
		Name:      "image-stage",
		Category:  "import",
		Usage:     "upload an image's data to its staging area (then image-import --import-method glance-direct)",
		ArgsUsage: "IMAGE_ID",
		Flags: append(connectionFlags(),
			&cli.StringFlag{Name: "file", Usage: "the data (default: stdin)"},
			progressFlag()),
		Action: func(c *cli.Context) error {
			id, cl, err := oneImageClient(c)
			if err != nil {
				return err
			}
			return stage(c, cl, id)
		},
	}
}

func importMethodFlags(def string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "import-method", Usage: "glance-direct (what image-stage sent) or web-download (--uri)", Value: def},
		&cli.StringFlag{Name: "uri", Usage: "the http(s) URL web-download fetches"},
	}
}

// checkImportArgs refuses what glance's import commands refuse.
func checkImportArgs(c *cli.Context, method string, haveData bool) error {
	switch method {
	case "glance-direct":
		if c.String("uri") != "" {
			return usagef(c, "--uri goes with --import-method web-download, not glance-direct")
		}
	case "web-download":
		if c.String("uri") == "" {
			return usagef(c, "--import-method web-download needs --uri")
		}
		if haveData {
			return usagef(c, "--import-method web-download takes no --file")
		}
	case "":
		if c.String("uri") != "" {
			return usagef(c, "--uri needs --import-method web-download")
		}
	default:
		return usagef(c, "--import-method %s: this cloud offers glance-direct and web-download", method)
	}
	return nil
}

func imageImportCommand() *cli.Command {
	return &cli.Command{
		Name:      "image-import",
		Category:  "import",
		Usage:     "import an image's data: glance-direct (staged with image-stage) or web-download (--uri)",
		ArgsUsage: "IMAGE_ID",
		Flags:     append(append(connectionFlags(), importMethodFlags("glance-direct")...), jsonFlag()),
		Action: func(c *cli.Context) error {
			id, err := oneImageArg(c)
			if err != nil {
				return err
			}
			method := c.String("import-method")
			if err := checkImportArgs(c, method, false); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			if err := cl.Import(c.Context, id, method, c.String("uri")); err != nil {
				return fmt.Errorf("import image %s: %w", id, err)
			}
			return printImageNow(c, cl, id)
		},
	}
}

func imageCreateViaImportCommand() *cli.Command {
	return &cli.Command{
		Name:     "image-create-via-import",
		Category: "import",
		Usage:    "create an image and import its data: glance-direct from --file (or stdin), web-download from --uri",
		Description: `Without --import-method: glance-direct when data is given (--file or
   stdin), else only the record (queued), as glance's command does.

   Examples:
   glimpse image-create-via-import --name disk --disk-format raw --container-format bare --file disk.img
   glimpse image-create-via-import --name cirros --disk-format qcow2 --container-format bare --import-method web-download --uri https://example.com/cirros.qcow2`,
		ArgsUsage: " ",
		Flags: append(append(append(connectionFlags(), imageFieldFlags()...), importMethodFlags("")...),
			&cli.StringFlag{Name: "file", Usage: "the data, for glance-direct (default: stdin when it is not a terminal)"},
			jsonFlag(), progressFlag()),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef(c, "image-create-via-import takes no arguments (got %q)", c.Args().First())
			}
			fields, err := imageFields(c)
			if err != nil {
				return err
			}
			haveData := c.String("file") != "" || (c.String("import-method") != "web-download" && !isTerminal(os.Stdin) && stdinHasData())
			method := c.String("import-method")
			if method == "" && haveData {
				method = "glance-direct"
			}
			if err := checkImportArgs(c, method, haveData); err != nil {
				return err
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			img, err := cl.Create(c.Context, fields)
			if err != nil {
				return fmt.Errorf("create image: %w", err)
			}
			id := img.ID()
			if method == "glance-direct" {
				if err := stage(c, cl, id); err != nil {
					return err
				}
			}
			if method != "" {
				if err := cl.Import(c.Context, id, method, c.String("uri")); err != nil {
					return fmt.Errorf("import image %s: %w", id, err)
				}
			}
			if img, err = cl.Get(c.Context, id); err != nil {
				return err
			}
			if img.Str("status") == "killed" {
				return fmt.Errorf("image %s was refused: %s", id, img.Str("glimpse.error"))
			}
			return printImage(c.App.Writer, img, c.Bool("json"))
		},
	}
}

// stdinHasData: stdin is a pipe or a file (not /dev/null, not closed), so
// glance would read the image from it.
func stdinHasData() bool {
	st, err := os.Stdin.Stat()
	if err != nil {
		return false
	}
	m := st.Mode()
	return m&os.ModeNamedPipe != 0 || (m.IsRegular() && st.Size() > 0)
}
