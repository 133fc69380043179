package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the daemon: mount the catalogue and serve the Glance v2 REST API",
		Action: func(c *cli.Context) error {
			return errors.New("not yet")
		},
	}
}
