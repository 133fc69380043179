package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// Usage errors (a wrong flag, a missing argument, an unknown command) are
// one line that names the problem and where to get help, and exit 2; every
// other failure exits 1 (see docs/cli.md).

// exitUsage is the exit status of a usage error, as getopt-based tools use.
const exitUsage = 2

// usageError is a command line the command cannot take.
type usageError struct {
	command string // "glimpse image-list", or "glimpse" for the app
	msg     string
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%s; see '%s --help'", e.msg, e.command)
}

// ExitCode makes main exit with exitUsage.
func (e *usageError) ExitCode() int { return exitUsage }

// usagef is a usage error of c's command.
func usagef(c *cli.Context, format string, args ...any) error {
	return &usageError{command: commandPath(c), msg: fmt.Sprintf(format, args...)}
}

func commandPath(c *cli.Context) string {
	if c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name {
		return c.App.Name
	}
	return c.App.Name + " " + c.Command.Name
}

// onUsageError replaces urfave/cli's answer to a flag it cannot parse (the
// whole help text, then the error) with one line, suggesting the closest
// flag for an unknown one.
func onUsageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		name = strings.TrimLeft(name, "-")
		msg = "unknown flag --" + name
		if s := closest(name, flagNames(c.Command.Flags)); s != "" {
			msg += fmt.Sprintf(" (did you mean --%s?)", s)
		}
	} else {
		// "invalid value "abc" for flag -min-ram: parse error": name the
		// flag as it is written.
		msg = strings.Replace(msg, "for flag -", "for flag --", 1)
		msg = strings.TrimSuffix(msg, ": parse error")
	}
	return &usageError{command: commandPath(c), msg: msg}
}

func flagNames(flags []cli.Flag) []string {
	var names []string
	for _, f := range flags {
		names = append(names, f.Names()...)
	}
	return append(names, "help")
}

// unknownCommand is the app's action: it runs only when no command matched
// (or none was given, which shows the help).
func unknownCommand(c *cli.Context) error {
	if c.Bool("version") && c.NArg() == 0 {
		return printVersion(c)
	}
	if c.NArg() == 0 {
		return cli.ShowAppHelp(c)
	}
	name := c.Args().First()
	var names []string
	for _, cmd := range c.App.Commands {
		if !cmd.Hidden {
			names = append(names, cmd.Names()...)
		}
	}
	msg := fmt.Sprintf("unknown command %q", name)
	if s := closest(name, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return &usageError{command: c.App.Name, msg: msg}
}

// helpCommand replaces urfave/cli's, which answers an unknown command
// with "No help topic" and exit 3.
func helpCommand() *cli.Command {
	return &cli.Command{
		Name:      "help",
		Aliases:   []string{"h"},
		Usage:     "show the commands, or one command's help",
		ArgsUsage: "[COMMAND]",
		Action: func(c *cli.Context) error {
			switch {
			case c.NArg() == 0:
				return cli.ShowAppHelp(c)
			case c.NArg() > 1:
				return usagef(c, "help takes one command")
			case c.App.Command(c.Args().First()) == nil:
				return unknownCommand(c)
			}
			// The app's context, whose command lists them all.
			return cli.ShowCommandHelp(c.Lineage()[1], c.Args().First())
		},
	}
}

// closest is the candidate nearest to s by edit distance, if it is near
// enough to be a typo (at most a third of its length, and 3, away).
func closest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(s, c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD > 3 || bestD*3 > max(len(s), len(best)) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, with an
// adjacent transposition counted as one edit (a typo's usual shape).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// exitCode maps an error to the process exit status: 2 for usage errors,
// 1 for every other failure, unless the error carries its own code
// (cli.Exit).
func exitCode(err error) int {
	var usage *usageError
	if errors.As(err, &usage) {
		return exitUsage
	}
	if coder, ok := err.(cli.ExitCoder); ok && coder.ExitCode() != 0 {
		return coder.ExitCode()
	}
	return 1
}

// oneDefaultInHelp keeps the help from showing a default twice or
// pointlessly: a bool flag's "(default: false)" goes, and so does the
// value urfave/cli appends for a flag whose usage already says its
// default (given as DefaultText, see serve's --uid).
func oneDefaultInHelp(cmds []*cli.Command, flags []cli.Flag) {
	for _, f := range flags {
		if b, ok := f.(*cli.BoolFlag); ok {
			b.DisableDefaultText = true
		}
	}
	for _, cmd := range cmds {
		oneDefaultInHelp(cmd.Subcommands, cmd.Flags)
	}
}

// setUsageErrors makes every command answer a bad command line with one
// line (onUsageError).
func setUsageErrors(cmds []*cli.Command) {
	for _, cmd := range cmds {
		cmd.OnUsageError = onUsageError
		setUsageErrors(cmd.Subcommands)
	}
}
