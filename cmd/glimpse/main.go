// Command glimpse is the image service: `glimpse serve` runs the daemon (the
// mount and the REST listener); the other commands are clients and tools.
// Each command lives in its own file as a thin layer that parses flags and
// calls a package; main only builds the app and maps errors to exit codes.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func newApp() *cli.App {
	app := &cli.App{
		Name:  "glimpse",
		Usage: "a virtual-machine image service with a filesystem face and a Glance v2 REST face",
		// --version prints what `glimpse version` does (urfave/cli's own
		// flag would print "glimpse version ...").
		HideVersion: true,
		// The glance CLI's endpoint flags, also accepted before a command.
		Flags: append(globalConnectionFlags(), &cli.BoolFlag{Name: "version", Aliases: []string{"v"}, Usage: "print the version (as glimpse version)"}),
		Commands: append([]*cli.Command{
			serveCommand(),
			infoCommand(),
			convertCommand(),
			versionCommand(),
			scrubCommand(),
			gcCommand(),
			metadefsCommand(),
			policyCommand(),
			helpCommand(),
			abortMountCommand(),
		}, append(imageCommands(), append(glanceParityCommands(), memberCommands()...)...)...),
		// Errors are printed once, by main, as one readable line.
		ExitErrHandler:  func(*cli.Context, error) {},
		OnUsageError:    onUsageError,
		HideHelpCommand: true,
		Action:          unknownCommand,
	}
	setUsageErrors(app.Commands)
	oneDefaultInHelp(app.Commands, app.Flags)
	return app
}

func main() {
	ctx := signalContext()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		msg := err.Error()
		if errors.Is(err, syscall.ECONNREFUSED) {
			msg += " (is glimpse serve running there? --os-image-url or OS_IMAGE_URL name the endpoint)"
		}
		fmt.Fprintf(os.Stderr, "glimpse: %s\n", msg)
		os.Exit(exitCode(err))
	}
}

// signalContext is cancelled by the first SIGINT or SIGTERM, which lets the
// daemon shut down cleanly; a second one exits at once (the registry is
// crash-safe, and the next start recovers as after a crash).
func signalContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "glimpse: second signal, exiting now")
		os.Exit(130)
	}()
	return ctx
}
