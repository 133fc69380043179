package main

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/api/client"
)

// The member commands share images with other projects, with the glance
// CLI's arguments and tables.

var memberStatuses = []string{"pending", "accepted", "rejected"}

func memberCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "member-create",
			Category:  "sharing",
			Usage:     "share an image with a project (pending until the project accepts it)",
			ArgsUsage: "IMAGE_ID MEMBER_ID",
			Flags:     append(connectionFlags(), jsonFlag()),
			Action: func(c *cli.Context) error {
				if c.NArg() != 2 {
					return errors.New("member-create needs IMAGE_ID and MEMBER_ID")
				}
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				m, err := cl.AddMember(c.Context, c.Args().Get(0), c.Args().Get(1))
				if err != nil {
					return fmt.Errorf("share image %s with %s: %w", c.Args().Get(0), c.Args().Get(1), err)
				}
				return printMembers(c.App.Writer, []client.Member{m}, c.Bool("json"))
			},
		},
		{
			Name:      "member-update",
			Category:  "sharing",
			Usage:     "accept, reject or leave pending an image shared with your project",
			ArgsUsage: "IMAGE_ID MEMBER_ID MEMBER_STATUS",
			Flags:     append(connectionFlags(), jsonFlag()),
			Action: func(c *cli.Context) error {
				if c.NArg() != 3 {
					return errors.New("member-update needs IMAGE_ID, MEMBER_ID and MEMBER_STATUS")
				}
				id, member, status := c.Args().Get(0), c.Args().Get(1), c.Args().Get(2)
				if !slices.Contains(memberStatuses, status) {
					// As glance's argument parser: refused before any request.
					return fmt.Errorf("member-update: invalid MEMBER_STATUS %q (choose from pending, accepted, rejected)", status)
				}
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				m, err := cl.UpdateMember(c.Context, id, member, status)
				if err != nil {
					return fmt.Errorf("update member %s of image %s: %w", member, id, err)
				}
				return printMembers(c.App.Writer, []client.Member{m}, c.Bool("json"))
			},
		},
		{
			Name:     "member-list",
			Category: "sharing",
			Usage:    "list the projects an image is shared with (a member sees only itself)",
			Flags: append(connectionFlags(),
				&cli.StringFlag{Name: "image-id", Usage: "the image", Required: true},
				jsonFlag()),
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("member-list takes no arguments (got %q); give the image with --image-id", c.Args().First())
				}
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				ms, err := cl.Members(c.Context, c.String("image-id"))
				if err != nil {
					return fmt.Errorf("list members of image %s: %w", c.String("image-id"), err)
				}
				return printMembers(c.App.Writer, ms, c.Bool("json"))
			},
		},
		{
			Name:      "member-get",
			Category:  "sharing",
			Usage:     "show one membership of an image",
			ArgsUsage: "IMAGE_ID MEMBER_ID",
			Flags:     append(connectionFlags(), jsonFlag()),
			Action: func(c *cli.Context) error {
				if c.NArg() != 2 {
					return errors.New("member-get needs IMAGE_ID and MEMBER_ID")
				}
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				m, err := cl.GetMember(c.Context, c.Args().Get(0), c.Args().Get(1))
				if err != nil {
					return fmt.Errorf("member %s of image %s: %w", c.Args().Get(1), c.Args().Get(0), err)
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, m)
				}
				// glance's member-get prints the member as a Property table.
				fmt.Fprint(c.App.Writer, table([]string{"Property", "Value"}, [][]string{
					{"created_at", m.CreatedAt}, {"image_id", m.ImageID}, {"member_id", m.MemberID},
					{"schema", m.Schema}, {"status", m.Status}, {"updated_at", m.UpdatedAt},
				}))
				return nil
			},
		},
		{
			Name:      "member-delete",
			Category:  "sharing",
			Usage:     "stop sharing an image with a project",
			ArgsUsage: "IMAGE_ID MEMBER_ID",
			Flags:     connectionFlags(),
			Action: func(c *cli.Context) error {
				if c.NArg() != 2 {
					return errors.New("member-delete needs IMAGE_ID and MEMBER_ID")
				}
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				if err := cl.RemoveMember(c.Context, c.Args().Get(0), c.Args().Get(1)); err != nil {
					return fmt.Errorf("remove member %s of image %s: %w", c.Args().Get(1), c.Args().Get(0), err)
				}
				return nil
			},
		},
	}
}

// printMembers prints glance's Image ID / Member ID / Status table, or JSON.
func printMembers(w io.Writer, ms []client.Member, asJSON bool) error {
	if asJSON {
		if ms == nil {
			ms = []client.Member{}
		}
		return printJSON(w, ms)
	}
	rows := [][]string{}
	for _, m := range ms {
		rows = append(rows, []string{m.ImageID, m.MemberID, m.Status})
	}
	fmt.Fprint(w, table([]string{"Image ID", "Member ID", "Status"}, rows))
	return nil
}
