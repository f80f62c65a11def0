package protocol

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ApiVersions: v0-4.
//
// The key list is built from the registration table, without the group keys
// when the server has no Groups. A version above 4 cannot be parsed, so it is
// answered before decoding (conn.handle) with a v0 body carrying
// UNSUPPORTED_VERSION and the key list (KIP-511); the client retries with a
// version from it. The response header never has the tagged-field byte.
//
// Version notes: v1 ThrottleMillis; v3 flexible, client software name and
// version (not checked: they are informational here); v4 no change.
func init() {
	register(api{key: apiVersionsKey, min: 0, max: 4, serve: serveApiVersions,
		acl: public("clients ask before anything else, authenticated or not")})
}

func serveApiVersions(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ApiKeys = s.apiKeys()
	return resp, nil
}

// apiVersionsFallback is the KIP-511 answer to a too-new ApiVersions.
func apiVersionsFallback(s *Server) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = s.apiKeys()
	return resp
}

// apiKeys lists what this server serves, by key.
func (s *Server) apiKeys() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]kmsg.ApiVersionsResponseApiKey, 0, len(apis))
	for _, a := range apis {
		if a.groups && s.g == nil {
			continue
		}
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = a.key, a.min, a.max
		if a.advertiseV0 {
			k.MinVersion = 0
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ApiKey < keys[j].ApiKey })
	return keys
}
