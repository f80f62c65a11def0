package main

import (
	"crypto/rand"
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ztfbroker/ztfbroker/protocol"
)

// The packager and the archiver inside serve are Kafka clients like any
// other, and act as principals of their own whatever
// authz.loopback.superuser says: they log in, over a loopback listener of
// their own (SASL_PLAINTEXT, SCRAM-SHA-512), as these users, with a password
// made afresh at every start and never written down: their SCRAM keys live
// in memory only (inProcessCredentials), so they need no write to the
// metadata store, which a nearly full disk refuses. They are super users: the packager
// creates and writes every nightly topic, the archiver reads and, past
// retention, deletes them, the filter runner reads them and writes every
// filter topic (each filter sees only what its owner may read).
const (
	packagerUser         = "ztfbroker-packager"
	archiverUser         = "ztfbroker-archive"
	mirrorUser           = "ztfbroker-mirror"
	filterUser           = "ztfbroker-filter"
	inProcessListener    = "ZTFBROKER_INTERNAL"
	inProcessIterations  = 4096
	inProcessPasswordLen = 32
)

// inProcessUsers are the super users serve adds to authz.super.users.
var inProcessUsers = []string{packagerUser, archiverUser, mirrorUser, filterUser, portalUser}

// inProcessCredentials is the user store with the in-process users in
// memory in front of it: only the in-process listener consults it.
type inProcessCredentials struct {
	protocol.Credentials
	users map[string]inProcessCredential
}

type inProcessCredential struct {
	salt, stored, server []byte
}

func newInProcessCredentials(store protocol.Credentials) *inProcessCredentials {
	return &inProcessCredentials{Credentials: store, users: map[string]inProcessCredential{}}
}

// ScramCredential answers the in-process users from memory, others from
// the store.
func (c *inProcessCredentials) ScramCredential(user, mechanism string) ([]byte, int, []byte, []byte, bool, error) {
	if u, ok := c.users[user]; ok {
		if mechanism != protocol.MechanismScramSHA512 {
			return nil, 0, nil, nil, false, nil
		}
		return u.salt, inProcessIterations, u.stored, u.server, true, nil
	}
	return c.Credentials.ScramCredential(user, mechanism)
}

// login makes a fresh credential for user and returns the client option
// that logs in with it. Call before serving.
func (c *inProcessCredentials) login(user string) (kgo.Opt, error) {
	pass := rand.Text() + rand.Text() // 52 base32 characters, 260 bits
	salt := make([]byte, inProcessPasswordLen)
	rand.Read(salt)
	stored, server, err := protocol.DeriveScramCredential(protocol.MechanismScramSHA512, user, pass, salt, inProcessIterations)
	if err != nil {
		return nil, fmt.Errorf("in-process user %s: %w", user, err)
	}
	c.users[user] = inProcessCredential{salt: salt, stored: stored, server: server}
	return kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()), nil
}

// inProcessListen opens the loopback listener the in-process clients use.
func inProcessListen() (net.Listener, protocol.ListenerConfig, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, protocol.ListenerConfig{}, fmt.Errorf("in-process listener: %w", err)
	}
	return ln, protocol.ListenerConfig{Name: inProcessListener,
		SASLMechanisms: []string{protocol.MechanismScramSHA512}, Private: true}, nil
}
