package protocol

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// connRTT returns the kernel's round-trip estimate of a TCP connection
// (TCP_INFO; for one just accepted, from its handshake), or 0 if unknown.
func connRTT(tc *net.TCPConn) time.Duration {
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	var info *unix.TCPInfo
	rc.Control(func(fd uintptr) {
		info, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if info == nil {
		return 0
	}
	return time.Duration(info.Rtt) * time.Microsecond
}
