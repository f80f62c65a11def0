package protocol

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Certificate is a listener's certificate and key, read from files and
// swapped atomically by Reload: connections keep the certificate they shook
// hands with, new ones get the new one, nothing is dropped.
type Certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadCertificate reads a PEM certificate chain and its key.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again; on error the current certificate stays.
func (c *Certificate) Reload() error {
	kp, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("protocol: tls certificate %s, key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&kp)
	return nil
}

// TLSConfig is a server configuration serving the current certificate,
// TLS 1.2 and later.
func (c *Certificate) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}

// handshakeTLS completes a TLS connection's handshake before its first
// request, within socket.request.read.timeout.ms, so that a failed one is
// logged and counted rather than taken for a client going away. It reports
// false when the connection must close.
func (c *conn) handshakeTLS() bool {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return true
	}
	tc.SetDeadline(time.Now().Add(c.s.cfg.RequestReadTimeout))
	err := tc.HandshakeContext(c.ctx)
	tc.SetDeadline(time.Time{})
	if err != nil {
		if !errors.Is(err, io.EOF) {
			c.clientError("tls_handshake", "closing connection: TLS handshake failed", zap.Error(err))
		}
		return false
	}
	return true
}
