package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// DeleteTopics: v0-6.
//
// Version notes: v1 ThrottleMillis; v4 flexible; v5 ErrorMessage; v6
// topics by name or id, the answer carrying both. A deleted topic's
// per-topic series leave the listener's metrics with it.
func init() {
	register(api{key: 20, min: 0, max: 6, serve: serveDeleteTopics,
		acl: perResource("DELETE on each topic")})
}

func serveDeleteTopics(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if req.Version >= 6 {
		for _, rt := range req.Topics {
			targets = append(targets, target{rt.Topic, rt.TopicID})
		}
	} else {
		for _, n := range req.TopicNames {
			targets = append(targets, target{name: kmsg.StringPtr(n)})
		}
	}
	for _, tg := range targets {
		t := kmsg.NewDeleteTopicsResponseTopic()
		t.Topic, t.TopicID = tg.name, tg.id
		name := ""
		if tg.name != nil {
			name = *tg.name
		}
		switch {
		case name == "" && tg.id != ([16]byte{}):
			n, _, ok := s.ids.name(ctx, tg.id)
			if !ok {
				t.ErrorCode = kerr.UnknownTopicID.Code
				break
			}
			name = n
			t.Topic = kmsg.StringPtr(n)
		case name != "" && req.Version >= 6:
			if id, _, err := s.b.Topic(ctx, name, false); err == nil {
				t.TopicID = id
			}
		}
		if t.ErrorCode == 0 {
			if name == "" {
				t.ErrorCode = kerr.InvalidTopicException.Code
			} else if !s.authorize(ctx, kmsg.ACLOperationDelete, kmsg.ACLResourceTypeTopic, name) {
				t.ErrorCode = kerr.TopicAuthorizationFailed.Code
			} else if err := s.b.DeleteTopic(ctx, name); err != nil {
				t.ErrorCode = s.errCode(err, kerr.UnknownServerError, "delete topic", zap.String("topic", name))
				t.ErrorMessage = kmsg.StringPtr(err.Error())
			} else {
				s.m.dropTopic(name)
			}
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
