package main

import (
	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/api/client"
)

// What the client commands (image-*, member-*, location-*, metadefs, ...)
// share: the endpoint flags, the client they make, and the flags and
// arguments most of them take.

// globalConnectionFlags are the glance CLI's endpoint flags, given before
// the command as glance takes them, with their environment variables.
func globalConnectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "os-image-url", Usage: "image service endpoint", Value: defaultImageURL, EnvVars: []string{"OS_IMAGE_URL"}},
		&cli.StringFlag{Name: "os-auth-token", Usage: "token sent as X-Auth-Token", EnvVars: []string{"OS_AUTH_TOKEN"}},
	}
}

// connectionFlags accept the same flags after the command. They have no
// environment variables of their own, so that "set on the command line"
// is what IsSet means for them (see flagFromLineage).
func connectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "os-image-url", Usage: "image service endpoint (also before the command; default $OS_IMAGE_URL or http://127.0.0.1:9292)"},
		&cli.StringFlag{Name: "os-auth-token", Usage: "token sent as X-Auth-Token (also before the command; default $OS_AUTH_TOKEN)"},
	}
}

// defaultImageURL is the endpoint of a daemon on its default --listen.
const defaultImageURL = "http://127.0.0.1:9292"

// flagFromLineage reads a connection flag given after the command, else
// the global one (given before it or from the environment). An empty
// value counts as not given, as the glance CLI treats OS_IMAGE_URL="".
func flagFromLineage(c *cli.Context, name string) string {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet(name) {
			if v := ctx.String(name); v != "" {
				return v
			}
		}
	}
	return ""
}

// endpoint is the image service the client commands talk to.
func endpoint(c *cli.Context) string {
	if u := flagFromLineage(c, "os-image-url"); u != "" {
		return u
	}
	return defaultImageURL
}

func newClient(c *cli.Context) (*client.Client, error) {
	return client.New(endpoint(c), flagFromLineage(c, "os-auth-token"))
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table (for scripts)"}
}

func progressFlag() cli.Flag {
	return &cli.BoolFlag{Name: "progress", Usage: "show a progress bar (default: when stderr is a terminal)"}
}

func oneImageArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usagef(c, "%s needs exactly one image id", c.Command.Name)
	}
	return c.Args().First(), nil
}

// oneImageClient is the start of a command on one image: its id, the one
// argument, and a client of the endpoint.
func oneImageClient(c *cli.Context) (string, *client.Client, error) {
	id, err := oneImageArg(c)
	if err != nil {
		return "", nil, err
	}
	cl, err := newClient(c)
	if err != nil {
		return "", nil, err
	}
	return id, cl, nil
}

// printImageNow prints the image as the service has it now (--json: as
// JSON), as glance does after a command that changed it.
func printImageNow(c *cli.Context, cl *client.Client, id string) error {
	img, err := cl.Get(c.Context, id)
	if err != nil {
		return err
	}
	return printImage(c.App.Writer, img, c.Bool("json"))
}
