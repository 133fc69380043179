package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/fs"
)

// abortMountCommand is what scripts/glimpse.service runs after the daemon
// stopped: a daemon killed while the kernel held one of its threads can
// leave a FUSE connection nobody aborts, hidden by the unit's lazy
// unmount, with its clients hung until it is aborted.
func abortMountCommand() *cli.Command {
	return &cli.Command{
		Name:      "abort-mount",
		Usage:     "abort the FUSE connection a dead daemon left on a mount point, then detach it",
		ArgsUsage: "MOUNTPOINT",
		Description: `Aborts the connection recorded for MOUNTPOINT by the daemon that mounted
it, if that daemon no longer serves (gone, a zombie or stopped), even when a
lazy unmount hid it from mountinfo; then detaches what is left on the mount
point. A serving daemon's mount is left alone. glimpse serve does the same
before it mounts.`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "watch", Usage: "wait until process PID (the daemon serving MOUNTPOINT) dies, then abort what it left (serve starts this watchdog itself)", Hidden: true},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("abort-mount takes one mount point")
			}
			log, err := newLogger(os.Stderr, "info", "text")
			if err != nil {
				return err
			}
			if pid := c.Int("watch"); pid > 0 {
				watchDaemon(pid, log)
			}
			aborted, err := fs.AbortDeadConnection(c.Args().First(), log)
			if err != nil {
				return err
			}
			if aborted {
				fmt.Fprintf(c.App.Writer, "aborted the dead daemon's connection on %s\n", c.Args().First())
			}
			return nil
		},
	}
}

// startMountWatchdog starts, beside the daemon, a process that waits for
// the daemon's death and then aborts the FUSE connection it left, if the
// kernel still holds one: after a SIGKILL that caught a thread of the
// daemon in an entry invalidation, the process stays a zombie with
// /dev/fuse open, and every client of the mount hangs until the
// connection is aborted. The watchdog is its own process group, so a
// Ctrl-C or a kill of the daemon does not take it along; it exits with
// the daemon. A stop of the whole service (systemd's cgroup kill) ends
// it too: then glimpse.service's ExecStopPost does its work.
func startMountWatchdog(mount string, log *slog.Logger) {
	exe, err := os.Executable()
	if err != nil {
		log.Warn("no mount watchdog: after a kill -9 the mount may hang until glimpse abort-mount", "err", err)
		return
	}
	cmd := exec.Command(exe, "abort-mount", "--watch", fmt.Sprint(os.Getpid()), mount)
	cmd.Args[0] = "glimpse"
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Warn("no mount watchdog: after a kill -9 the mount may hang until glimpse abort-mount", "err", err)
		return
	}
	go cmd.Wait() // reaped when it exits, after the daemon
}

// watchDaemon returns once process pid no longer runs: gone, or a zombie
// (its main thread exited; a thread the kernel holds may keep it so).
func watchDaemon(pid int, log *slog.Logger) {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			log.Debug("the daemon is dead", "pid", pid)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
