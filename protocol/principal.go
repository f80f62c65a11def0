package protocol

import (
	"context"
	"net/netip"
)

// Principal is who sent a request: the user a connection authenticated as
// (SASL), or no one, with the listener and the address it came through.
// Every request's context carries its connection's Principal (see
// PrincipalFrom), so that the Backend, Groups and the authorizer judge the
// same identity.
type Principal struct {
	// User is the authenticated user name; empty means anonymous.
	User string
	// Listener is the name of the listener the connection came in on
	// (PLAINTEXT, SASL_SSL, ...).
	Listener string
	// Addr is the peer's IP address.
	Addr netip.Addr
	// TLS tells whether the connection is encrypted.
	TLS bool
}

// Anonymous tells whether the connection has not authenticated.
func (p Principal) Anonymous() bool { return p.User == "" }

// Loopback tells whether the connection comes from this machine.
func (p Principal) Loopback() bool { return p.Addr.IsValid() && p.Addr.Unmap().IsLoopback() }

// String is the principal as Kafka names it in ACLs: User:<name>, or
// User:ANONYMOUS.
func (p Principal) String() string {
	if p.Anonymous() {
		return "User:ANONYMOUS"
	}
	return "User:" + p.User
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p, for callers inside the process that
// act as a principal of their own (the packager, the archiver).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal ctx carries; ok is false for a
// context that did not come from this listener or WithPrincipal.
func PrincipalFrom(ctx context.Context) (p Principal, ok bool) {
	p, ok = ctx.Value(principalKey{}).(Principal)
	return p, ok
}
