package protocol

import (
	"context"
	"net/netip"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Authorizer decides whether a principal may do an operation on a
// resource, as Kafka's authorizer does. Package broker implements it from
// its ACLs without importing protocol, so it speaks basic and kmsg types:
// user is the authenticated user ("" for anonymous), addr the peer's IP,
// rt one of kmsg.ACLResourceTypeTopic, Group or Cluster (name "kafka-cluster"
// for the cluster).
//
// A Server without an Authorizer allows everything: library users and the
// listener's own tests need none.
type Authorizer interface {
	Authorize(ctx context.Context, user string, addr netip.Addr, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool
}

// ACLAdmin is optionally implemented by the Authorizer to serve
// CreateAcls, DescribeAcls and DeleteAcls; without it those keys answer
// SECURITY_DISABLED, as Kafka does with no authorizer configured. The
// listener has checked ALTER (create, delete) or DESCRIBE on the cluster.
type ACLAdmin interface {
	CreateACLs(ctx context.Context, req *kmsg.CreateACLsRequest) *kmsg.CreateACLsResponse
	DescribeACLs(ctx context.Context, req *kmsg.DescribeACLsRequest) *kmsg.DescribeACLsResponse
	DeleteACLs(ctx context.Context, req *kmsg.DeleteACLsRequest) *kmsg.DeleteACLsResponse
}

// ClusterResource is the name of the one cluster resource, Kafka's.
const ClusterResource = "kafka-cluster"

// SetAuthorizer makes s check every request through a. Call it before
// Serve; nil allows everything.
func (s *Server) SetAuthorizer(a Authorizer) { s.authz = a }

// authorize is the one place requests are checked: every API key's access
// (api.acl) calls it, before serve or inside it, per resource.
func (s *Server) authorize(ctx context.Context, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if s.authz == nil {
		return true
	}
	p, _ := PrincipalFrom(ctx) // none: anonymous with no address
	return s.authz.Authorize(ctx, p.User, p.Addr, op, rt, name)
}

// authorizeTopicCreate tells whether ctx's principal may create topic
// name: CREATE on the cluster or on the topic, as Kafka allows.
func (s *Server) authorizeTopicCreate(ctx context.Context, name string) bool {
	return s.authorize(ctx, kmsg.ACLOperationCreate, kmsg.ACLResourceTypeCluster, ClusterResource) ||
		s.authorize(ctx, kmsg.ACLOperationCreate, kmsg.ACLResourceTypeTopic, name)
}

// access is how an API key is authorized. register refuses a key without
// one, so a new key cannot forget it. doc says what is checked (and is
// what TestEveryKeyDeclaresAccess lists); check, when set, runs before the
// handler and answers instead of it when it returns a response.
type access struct {
	doc   string
	check func(s *Server, ctx context.Context, req kmsg.Request) kmsg.Response
}

// public is a key anyone may send; why says why that is safe.
func public(why string) access { return access{doc: "public: " + why} }

// perResource is a key whose handler checks each resource it names through
// s.authorize and answers a denied one with that resource's error code.
func perResource(what string) access { return access{doc: "per resource: " + what} }

// wholeRequest checks op on one resource named by the request (a group, or
// the cluster) before the handler; a denial is the response with deny
// setting the request's error code (GROUP_AUTHORIZATION_FAILED or
// CLUSTER_AUTHORIZATION_FAILED).
func wholeRequest(op kmsg.ACLOperation, rt kmsg.ACLResourceType, name func(kmsg.Request) string, deny func(kmsg.Request, kmsg.Response, int16)) access {
	return access{
		doc: "whole request: " + op.String() + " on " + rt.String(),
		check: func(s *Server, ctx context.Context, req kmsg.Request) kmsg.Response {
			n := ClusterResource
			if name != nil {
				n = name(req)
			}
			if s.authorize(ctx, op, rt, n) {
				return nil
			}
			resp := req.ResponseKind()
			deny(req, resp, deniedCode(rt))
			return resp
		},
	}
}

// and adds to a's doc what its handler checks besides.
func (a access) and(what string) access {
	a.doc += "; " + what
	return a
}

// deniedCode is Kafka's error code for a denied resource of type rt.
func deniedCode(rt kmsg.ACLResourceType) int16 {
	switch rt {
	case kmsg.ACLResourceTypeGroup:
		return kerr.GroupAuthorizationFailed.Code
	case kmsg.ACLResourceTypeCluster:
		return kerr.ClusterAuthorizationFailed.Code
	default:
		return kerr.TopicAuthorizationFailed.Code
	}
}

// withAccess wraps a's handler with its access check.
func withAccess(a api) api {
	check, serve := a.acl.check, a.serve
	if check == nil {
		return a
	}
	a.serve = func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
		if resp := check(s, c.requestContext(), req); resp != nil {
			return resp, nil
		}
		return serve(s, c, req)
	}
	return a
}
