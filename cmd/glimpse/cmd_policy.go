package main

import (
	"fmt"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/lifecycle/policy"
)

// policyCommand prints the rules a daemon would enforce, as Glance's
// oslopolicy-policy-generator does: a policy file an operator can check
// before restarting the daemon with it, and a sample to start from.
func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "print the policy rules serve would enforce (Glance's defaults, with a policy file's overrides), as YAML",
		Description: `Every rule glimpse knows, one per line in policy.yaml form, with its
effective check string; rules a --policy-file overrides are marked. A file
serve would refuse is refused here with the same message.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "policy-file", Usage: "Glance-style policy.yaml (or .json) to apply", TakesFile: true, EnvVars: []string{"GLIMPSE_POLICY_FILE"}},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("policy takes no arguments (got %q)", c.Args().First())
			}
			e := policy.NewDefault()
			if path := c.String("policy-file"); path != "" {
				var err error
				if e, err = policy.LoadFile(path); err != nil {
					return fmt.Errorf("--policy-file: %w", err)
				}
			}
			overridden := e.Overridden()
			family := ""
			for _, r := range policy.Defaults {
				if r.Family != family {
					family = r.Family
					fmt.Fprintf(c.App.Writer, "# %s\n", family)
				}
				check, _ := e.CheckString(r.Name)
				mark := ""
				if slices.Contains(overridden, r.Name) {
					mark = "  # overridden"
				}
				fmt.Fprintf(c.App.Writer, "%q: %q%s\n", r.Name, check, mark)
			}
			return nil
		},
	}
}
