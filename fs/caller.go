package fs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// caller is the process behind a FUSE request, as /proc tells it.
type caller struct {
	tgid uint32 // its thread group (process)
	// exiting: the calling thread is in exit(2) or dying of a signal; a
	// FLUSH then comes from the kernel closing the files the process left
	// open, not from a close(2) of its own.
	exiting bool
	// killedBy is the signal that is killing the process (0: it is not
	// dying of a signal, or it is not exiting).
	killedBy syscall.Signal
}

// pfExiting is the kernel's PF_EXITING task flag (include/linux/sched.h),
// set by do_exit before the process's files are closed.
const pfExiting = 0x4

// callerOf describes the caller of the request in ctx. The kernel sets the
// exit code of a dying task (field 52 of /proc/PID/stat, the wait(2)
// status) and PF_EXITING (field 9) before it closes the task's files, and
// the FLUSH of each file left open waits for our answer, so both are read
// while the task still exists. The exit code needs ptrace-read access:
// root has it, a daemon running as a user has it for that user's
// processes; elsewhere the field reads 0 and a signal death looks like an
// exit.
func callerOf(ctx context.Context) caller {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return caller{}
	}
	tid := strconv.FormatUint(uint64(c.Pid), 10)
	who := caller{tgid: tgidOf(c.Pid)}
	if who.tgid == 0 {
		return who // its /proc did not answer: a task in execve
	}
	stat, err := readProc("/proc/" + tid + "/stat")
	if err != nil {
		return who
	}
	// The command name (field 2) is in parentheses and may hold anything;
	// the fields after the last ')' start with field 3.
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return who
	}
	fields := bytes.Fields(stat[end+1:])
	field := func(n int) uint64 {
		if n-3 >= len(fields) {
			return 0
		}
		v, _ := strconv.ParseUint(string(fields[n-3]), 10, 64)
		return v
	}
	who.exiting = field(9)&pfExiting != 0
	if who.exiting {
		who.killedBy = syscall.WaitStatus(field(52)).Signal()
		if !syscall.WaitStatus(field(52)).Signaled() {
			who.killedBy = 0
		}
	}
	return who
}

// callerTgid is the thread group (process) of the FUSE request's caller:
// the request carries a thread id, and a multithreaded writer may open and
// close from different threads.
func callerTgid(ctx context.Context) uint32 {
	caller, ok := fuse.FromContext(ctx)
	if !ok {
		return 0
	}
	return tgidOf(caller.Pid)
}

func tgidOf(tid uint32) uint32 {
	status, err := readProc("/proc/" + strconv.FormatUint(uint64(tid), 10) + "/status")
	if errors.Is(err, errProcSlow) {
		return 0 // unknown: no process's own close
	}
	if err != nil {
		return tid
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("Tgid:")); ok {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 32)
			if err == nil {
				return uint32(n)
			}
		}
	}
	return tid
}

// process names one process across pid reuse: its id and its start time
// (field 22 of /proc/PID/stat, in clock ticks since boot).
type process struct {
	tgid  uint32
	start uint64
}

// processOf identifies the process with thread group tgid; the zero
// process when it is gone.
func processOf(tgid uint32) process {
	stat, err := readProc("/proc/" + strconv.FormatUint(uint64(tgid), 10) + "/stat")
	if err != nil {
		return process{}
	}
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return process{}
	}
	fields := bytes.Fields(stat[end+1:])
	if len(fields) < 22-2 {
		return process{}
	}
	start, err := strconv.ParseUint(string(fields[22-3]), 10, 64)
	if err != nil {
		return process{}
	}
	return process{tgid: tgid, start: start}
}

// procReadWait bounds a read of a caller's /proc files. A task in execve
// holds locks that reading its /proc entries waits for, and execve closes
// the task's close-on-exec files first: the FLUSH of one of ours then
// waits for our answer while we would wait for execve. Past the bound the
// caller is unknown (a child's exec, not its opener's close; the release
// settles the file), and the read finishes by itself once we answered.
const procReadWait = 200 * time.Millisecond

var errProcSlow = errors.New("/proc read did not answer in time")

func readProc(path string) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := os.ReadFile(path)
		done <- result{b, err}
	}()
	t := time.NewTimer(procReadWait)
	defer t.Stop()
	select {
	case r := <-done:
		return r.b, r.err
	case <-t.C:
		return nil, errProcSlow
	}
}
