package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// OffsetCommit: v2-9, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// Commit metadata must round-trip; v2 is the first with retention, v8
// flexible, v9 for KIP-848 members.
func init() {
	register(api{key: 8, min: 2, max: 9, groups: true,
		acl: wholeRequest(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup,
			func(r kmsg.Request) string { return r.(*kmsg.OffsetCommitRequest).Group },
			func(r kmsg.Request, w kmsg.Response, code int16) {
				req, resp := r.(*kmsg.OffsetCommitRequest), w.(*kmsg.OffsetCommitResponse)
				for _, rt := range req.Topics {
					t := kmsg.NewOffsetCommitResponseTopic()
					t.Topic = rt.Topic
					for _, rp := range rt.Partitions {
						p := kmsg.NewOffsetCommitResponseTopicPartition()
						p.Partition, p.ErrorCode = rp.Partition, code
						t.Partitions = append(t.Partitions, p)
					}
					resp.Topics = append(resp.Topics, t)
				}
			}),
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			return groupAnswer(s.g.OffsetCommit(c.requestContext(), req.(*kmsg.OffsetCommitRequest)))
		}})
}
