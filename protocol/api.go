package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// api is one Kafka API key as served here. Each handler file NN_name.go
// registers exactly one in its init, so the ApiVersions answer is built from
// the same table that dispatches requests and cannot drift from it.
type api struct {
	key      int16
	min, max int16
	// serve answers req (already decoded at a version in [min, max]). A nil
	// response means none is sent (Produce with acks=0). A returned error
	// closes the connection.
	serve func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error)
}

// apis is filled by init functions only and read-only afterwards.
var apis = map[int16]api{}

func register(a api) {
	if _, dup := apis[a.key]; dup {
		panic("protocol: api key registered twice")
	}
	apis[a.key] = a
}
