package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// api is one Kafka API key as served here. Each handler file NN_name.go
// registers exactly one in its init, so the ApiVersions answer is built from
// the same table that dispatches requests and cannot drift from it.
type api struct {
	key      int16
	min, max int16
	// groups marks keys answered by Groups: advertised and served only
	// when the server has one.
	groups bool
	// advertiseV0 advertises versions from 0 while serving only from min;
	// see 00_produce.go for the one key that needs it and why.
	advertiseV0 bool
	// serve answers req (already decoded at a version in [min, max]). A nil
	// response means none is sent (Produce with acks=0). A returned error
	// closes the connection.
	serve func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error)
	// acl is how the key is authorized (authz.go); required.
	acl access
}

// apis is filled by init functions only and read-only afterwards.
var apis = map[int16]api{}

func register(a api) {
	if _, dup := apis[a.key]; dup {
		panic("protocol: api key registered twice")
	}
	if a.min < 0 || a.max < a.min {
		panic("protocol: bad version range")
	}
	if a.acl.doc == "" {
		panic("protocol: api key " + kmsg.NameForKey(a.key) + " registered without its authorization (acl)")
	}
	apis[a.key] = withAccess(a)
}

// Keys the listener itself needs to tell apart.
const (
	produceKey     int16 = 0
	fetchKey       int16 = 1
	apiVersionsKey int16 = 18
)
