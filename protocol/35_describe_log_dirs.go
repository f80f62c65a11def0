package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// DescribeLogDirs: v1-4 (Java AdminClient describeLogDirs,
// kafka-log-dirs.sh). One log directory, the broker's data directory, with
// the size of each partition asked for (all when Topics is null) and, from
// v4, the size and free space of its file system. Needs DESCRIBE on the
// cluster, as in Kafka; denied, v3+ answer CLUSTER_AUTHORIZATION_FAILED and
// earlier versions no directories.
//
// Version notes: v1 same as v0 (which Kafka 4 no longer serves); v2
// flexible; v3 top-level ErrorCode; v4 TotalBytes and UsableBytes.
func init() {
	register(api{key: 35, min: 1, max: 4, serve: serveDescribeLogDirs,
		acl: wholeRequest(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeCluster, nil,
			func(_ kmsg.Request, resp kmsg.Response, code int16) {
				resp.(*kmsg.DescribeLogDirsResponse).ErrorCode = code
			})})
}

func serveDescribeLogDirs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeLogDirsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	resp.Dirs = append(resp.Dirs, s.b.LogDir(c.requestContext(), req.Topics))
	return resp, nil
}
