package fs

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// exitWatcher reports how processes exit, from the kernel's process events
// connector (NETLINK_CONNECTOR, CN_IDX_PROC). The mount needs the exit
// status of the process that created a file it closed with nothing in it
// and may reopen (qemu-img): success settles the upload, failure leaves
// nothing. The kernel queues the event in do_exit before the parent can
// reap the process, so by the time a shell sees the exit, the event waits
// on our socket. Listening needs CAP_NET_ADMIN before Linux 6.6; where it
// is refused the mount settles such files when it finds the creator gone,
// as if it had succeeded.
type exitWatcher struct {
	fd      int
	log     *slog.Logger
	stopped atomic.Bool
	done    chan struct{} // closed when run returns
}

// The connector's constants (include/uapi/linux/connector.h, cn_proc.h).
const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	procEventExit     = 0x80000000
	nlmsgHdrLen       = 16
	cnMsgLen          = 20
)

// watchExits opens the connector and starts listening; nil when the kernel
// refuses.
func watchExits(log *slog.Logger) *exitWatcher {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		log.Info("process exit events unavailable; files closed empty settle when their creator is found gone", "err", err)
		return nil
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		unix.Close(fd)
		log.Info("process exit events unavailable; files closed empty settle when their creator is found gone", "err", err)
		return nil
	}
	// Listen, for exit events only (kernels before 6.6 ignore the filter
	// and send every event; run skips the others).
	msg := make([]byte, nlmsgHdrLen+cnMsgLen+8)
	le := binary.LittleEndian
	le.PutUint32(msg[0:], uint32(len(msg)))
	le.PutUint16(msg[4:], unix.NLMSG_DONE)
	le.PutUint32(msg[12:], uint32(os.Getpid()))
	le.PutUint32(msg[16:], cnIdxProc)
	le.PutUint32(msg[20:], cnValProc)
	le.PutUint16(msg[32:], 8)
	le.PutUint32(msg[36:], procCnMcastListen)
	le.PutUint32(msg[40:], procEventExit)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		log.Info("process exit events unavailable; files closed empty settle when their creator is found gone", "err", err)
		return nil
	}
	// A blocked receive does not end when the socket is closed: wake up
	// now and then to see whether to stop.
	tv := unix.Timeval{Usec: 200_000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		log.Info("process exit events unavailable", "err", err)
		return nil
	}
	return &exitWatcher{fd: fd, log: log, done: make(chan struct{})}
}

// run calls exited for every process (thread group) that exits, with its
// wait(2) status, until close. A lost batch of events (the socket
// overflowed) is reported as lost, so the caller can look for creators
// that are gone.
func (w *exitWatcher) run(exited func(tgid uint32, status syscall.WaitStatus), lost func()) {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	le := binary.LittleEndian
	for !w.stopped.Load() {
		n, _, err := unix.Recvfrom(w.fd, buf, 0)
		switch err {
		case nil:
		case unix.ENOBUFS:
			lost()
			continue
		case unix.EINTR, unix.EAGAIN:
			continue
		default:
			w.log.Error("process exit events stopped", "err", err)
			lost()
			return
		}
		for b := buf[:n]; len(b) >= nlmsgHdrLen; {
			size := int(le.Uint32(b))
			if size < nlmsgHdrLen || size > len(b) {
				break
			}
			ev := b[nlmsgHdrLen:size]
			b = b[min((size+3)&^3, len(b)):]
			if len(ev) < cnMsgLen+28 {
				continue
			}
			p := ev[cnMsgLen:]
			if le.Uint32(p) != procEventExit {
				continue
			}
			pid, tgid, code := le.Uint32(p[16:]), le.Uint32(p[20:]), le.Uint32(p[24:])
			if pid == tgid { // the process, not one of its threads
				exited(tgid, syscall.WaitStatus(code))
			}
		}
	}
}

// close stops run and releases the socket.
func (w *exitWatcher) close() error {
	w.stopped.Store(true)
	<-w.done
	if err := unix.Close(w.fd); err != nil {
		return fmt.Errorf("close process events socket: %w", err)
	}
	return nil
}
