package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/glimpse-project/glimpse/convert"
	"github.com/urfave/cli/v2"
)

func convertCommand() *cli.Command {
	return &cli.Command{
		Name:      "convert",
		Usage:     "convert a disk image between raw, qcow2, vmdk, vdi and vpc (and from vhdx), like qemu-img convert",
		ArgsUsage: "IN OUT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "f", Usage: "input format (detected when omitted; raw reads any file as bytes)"},
			&cli.StringFlag{Name: "O", Usage: "output format: raw, qcow2, vmdk, vdi or vpc", Required: true},
			&cli.StringFlag{Name: "o", Usage: "output options, comma-separated: subformat=monolithicSparse|streamOptimized|dynamic|fixed"},
			&cli.BoolFlag{Name: "p", Usage: "show a progress bar (bytes, rate, ETA) on stderr when it is a terminal"},
			&cli.IntFlag{Name: "m", Usage: "number of parallel copiers", DefaultText: "one per CPU, at least 4"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usagef(c, "convert needs IN and OUT")
			}
			in, out := c.Args().Get(0), c.Args().Get(1)
			opts := convert.FileOptions{InFormat: c.String("f"), OutFormat: c.String("O")}
			opts.Workers = c.Int("m")
			if err := parseCreateOptions(c.String("o"), &opts.Create); err != nil {
				return err
			}
			// As the image commands: the bar goes to stderr, and only on a
			// terminal, so a piped or logged -p stays quiet.
			if c.Bool("p") && isTerminal(os.Stderr) {
				var bar *progressBar
				opts.Progress = func(done, total int64) {
					if bar == nil {
						bar = newProgressBar("convert", total, os.Stderr)
					}
					bar.update(done)
				}
				defer func() {
					if bar != nil {
						bar.finish()
					}
				}()
			}
			return convert.ConvertFile(c.Context, in, out, opts)
		},
	}
}

func parseCreateOptions(s string, co *convert.CreateOptions) error {
	if s == "" {
		return nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k != "subformat" {
			return fmt.Errorf("unsupported -o option %q (only subformat=...)", kv)
		}
		co.Subformat = v
	}
	return nil
}
