package main

import (
	"encoding/json"
	"fmt"
	"os"
	"syscall"

	"github.com/glimpse-project/glimpse/convert"
	"github.com/urfave/cli/v2"
)

// imageInfo mirrors `qemu-img info --output json`. There is never a
// backing-filename: inspection refuses images that have one.
type imageInfo struct {
	VirtualSize    int64           `json:"virtual-size"`
	Filename       string          `json:"filename"`
	ClusterSize    int64           `json:"cluster-size,omitempty"`
	Format         string          `json:"format"`
	ActualSize     int64           `json:"actual-size"`
	FormatSpecific *formatSpecific `json:"format-specific,omitempty"`
	DirtyFlag      bool            `json:"dirty-flag"`
}

type formatSpecific struct {
	Type string            `json:"type"`
	Data map[string]string `json:"data"`
}

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:      "info",
		Usage:     "inspect a disk image like qemu-img info, with glimpse's own safe parsers",
		ArgsUsage: "FILE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Value: "human", Usage: "output format: human or json"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef(c, "info needs exactly one FILE")
			}
			out := c.String("output")
			if out != "human" && out != "json" {
				return usagef(c, "--output must be human or json, not %q", out)
			}
			info, err := inspectFile(c.Args().First())
			if err != nil {
				return err
			}
			if out == "json" {
				b, err := json.MarshalIndent(info, "", "    ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(c.App.Writer, "%s\n", b)
				return err
			}
			return printInfo(c, info)
		},
	}
}

func inspectFile(path string) (imageInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return imageInfo{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return imageInfo{}, err
	}
	rep, err := convert.Inspect(f, st.Size())
	if err != nil {
		return imageInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	info := imageInfo{
		VirtualSize: rep.VirtualSize,
		Filename:    path,
		ClusterSize: rep.ClusterSize,
		Format:      rep.Format,
		ActualSize:  st.Size(),
	}
	// qemu reports allocated bytes, not the apparent size.
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		info.ActualSize = sys.Blocks * 512
	}
	switch rep.Format {
	case convert.QCOW2:
		info.FormatSpecific = &formatSpecific{Type: "qcow2", Data: map[string]string{
			"compat": rep.Compat, "compression-type": rep.Compression,
		}}
	case convert.VMDK:
		info.FormatSpecific = &formatSpecific{Type: "vmdk", Data: map[string]string{"create-type": rep.CreateType}}
	}
	return info, nil
}

func printInfo(c *cli.Context, info imageInfo) error {
	w := c.App.Writer
	fmt.Fprintf(w, "image: %s\nfile format: %s\n", info.Filename, info.Format)
	fmt.Fprintf(w, "virtual size: %s (%d bytes)\ndisk size: %s\n", humanSize(info.VirtualSize), info.VirtualSize, humanSize(info.ActualSize))
	if info.ClusterSize != 0 {
		fmt.Fprintf(w, "cluster_size: %d\n", info.ClusterSize)
	}
	if fs := info.FormatSpecific; fs != nil {
		fmt.Fprintf(w, "Format specific information:\n")
		for _, k := range []string{"compat", "compression-type", "create-type"} {
			if v, ok := fs.Data[k]; ok {
				fmt.Fprintf(w, "    %s: %s\n", k, v)
			}
		}
	}
	return nil
}

// humanSize prints sizes the way qemu-img does: "5 MiB", "1.5 GiB".
func humanSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v, u := float64(n), 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%d B", n)
	}
	s := fmt.Sprintf("%.3g", v)
	return s + " " + units[u]
}
