package main

import (
	"fmt"
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
			&cli.BoolFlag{Name: "p", Usage: "show progress"},
			&cli.IntFlag{Name: "m", Usage: "number of parallel copiers (default: one per CPU, at least 4)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return fmt.Errorf("convert needs IN and OUT")
			}
			in, out := c.Args().Get(0), c.Args().Get(1)
			opts := convert.FileOptions{InFormat: c.String("f"), OutFormat: c.String("O")}
			opts.Workers = c.Int("m")
			if err := parseCreateOptions(c.String("o"), &opts.Create); err != nil {
				return err
			}
			if c.Bool("p") {
				w := c.App.Writer
				last := -1
				opts.Progress = func(done, total int64) {
					// Print only when the shown value changes, as qemu-img does.
					pct := int(done * 10000 / max(total, 1))
					if pct != last {
						last = pct
						fmt.Fprintf(w, "    (%d.%02d/100%%)\r", pct/100, pct%100)
					}
				}
				fmt.Fprintf(w, "    (0.00/100%%)\r")
				defer fmt.Fprintln(w)
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
