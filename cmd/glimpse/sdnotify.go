package main

import (
	"fmt"
	"net"
	"os"
)

// sdNotify tells systemd (Type=notify) about the daemon's state, when it
// runs under systemd: it writes state ("READY=1", "STOPPING=1") to the
// datagram socket named by $NOTIFY_SOCKET. Without the variable it does
// nothing. A name starting with @ is an abstract socket.
func sdNotify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
