package protocol

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// clientInfoKey keys the requesting client's identity in the context handed
// to Groups and Backend.Produce.
type clientInfoKey struct{}

type clientInfo struct{ id, host string }

// ClientInfo returns the client id and host of the request whose context
// Groups (or Backend.Produce) was given, as Kafka reports them in
// DescribeGroups: host is a slash and the peer's IP ("/10.0.0.7"). Both are
// empty for a context that did not come from this listener. Its signature
// fits broker.GroupCoordinator.SetClientInfo.
func ClientInfo(ctx context.Context) (clientID, host string) {
	if ci, ok := ctx.Value(clientInfoKey{}).(clientInfo); ok {
		return ci.id, ci.host
	}
	return "", ""
}

// requestContext is the connection's context carrying the client id of the
// request being handled, the peer's host and the connection's principal
// (PrincipalFrom), which every authorization check judges.
func (c *conn) requestContext() context.Context {
	ctx := context.WithValue(c.ctx, clientInfoKey{}, clientInfo{id: c.clientID, host: c.host})
	return WithPrincipal(ctx, c.principal)
}

// groupAnswer passes on what Groups answered. Groups builds the whole
// response at the request's version; a nil one is a coordinator bug, and
// the connection is closed rather than sent a made-up answer.
func groupAnswer[R any, P interface {
	*R
	kmsg.Response
}](resp P) (kmsg.Response, error) {
	if resp == nil {
		return nil, errors.New("group coordinator returned no response")
	}
	return resp, nil
}
