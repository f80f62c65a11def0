package protocol

// Send buffers.
//
// Linux sizes a TCP socket's send buffer as the connection goes
// (autotuning, up to net.ipv4.tcp_wmem's maximum, 4 MiB by default). A
// client across a WAN needs that: one connection moves at most a send
// buffer per round trip, so a fixed 256 KiB would hold a consumer 50 ms
// away to 10 MB/s. A client on this host or its LAN does not: at a round
// trip of tens of microseconds a few hundred KiB keep the pipe full, and a
// fixed buffer costs far less than the autotuned one. Measured with 8 kcat
// consumers reading one topic at once over loopback on 2 cores (1 MiB
// fetches, BenchmarkFanoutSendBuffer), the fixed 256 KiB served 4.4-4.9 GB/s
// at 0.19-0.22 s of broker CPU per GB, and 0.37-0.39 s/GB for the whole
// machine, clients included; autotuned buffers served 3.0-3.7 GB/s at
// 0.30-0.38 s/GB, 0.51-0.63 s/GB for the machine. Apache Kafka fixes every
// connection's buffer (socket.send.buffer.bytes, 100 KiB), WAN or not.
//
// So a connection whose round trip at connect (the kernel's estimate from
// the handshake) is under lanRTT gets socket.send.buffer.bytes; any other,
// or one whose round trip is unknown, keeps the kernel's autotuning. The
// kernel doubles what is asked, for its own bookkeeping. Asking 128 to 384
// KiB measured the same; from 512 KiB the gain was gone, and under 128 KiB
// a loopback connection (64 KiB segments) has room for one segment and
// waits for the client's delayed acknowledgement, 40 ms, after each:
// 2 MB/s at 32 KiB.

import (
	"net"
	"time"
)

const (
	// lanRTT is the round trip under which a connection's send buffer is
	// fixed: this host or its LAN.
	lanRTT = time.Millisecond
	// minSendBuffer and maxSendBuffer bound socket.send.buffer.bytes.
	minSendBuffer = 128 << 10
	maxSendBuffer = 64 << 20
)

// sendBufferFor returns the send buffer to set on a connection whose round
// trip at connect was rtt (0: unknown), or 0 to leave it to the kernel.
func sendBufferFor(bytes int, rtt time.Duration) int {
	if bytes <= 0 || rtt <= 0 || rtt >= lanRTT {
		return 0
	}
	return bytes
}

// sizeSendBuffer fixes the send buffer of a TCP connection from this host
// or its LAN (socket.send.buffer.bytes). A failure leaves the kernel's
// autotuning, which serves as before.
func (s *Server) sizeSendBuffer(nc net.Conn) {
	tc, ok := nc.(*net.TCPConn)
	if !ok || s.cfg.SendBufferBytes <= 0 {
		return // -1: no round trip to ask for
	}
	if n := sendBufferFor(s.cfg.SendBufferBytes, connRTT(tc)); n > 0 {
		tc.SetWriteBuffer(n)
	}
}
