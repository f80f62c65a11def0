package protocol

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeUserScramCredentials: v0.
//
// Lists users and the iterations of each SCRAM mechanism they have (never
// salts or keys), from the Backend's Credentials. No users named: every
// user (the Java AdminClient sends an empty list, not null). An unknown user is RESOURCE_NOT_FOUND, one named twice
// DUPLICATE_RESOURCE. Needs DESCRIBE on the cluster.
func init() {
	register(api{key: 50, min: 0, max: 0, serve: serveDescribeUserScramCredentials,
		acl: wholeRequest(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeCluster, nil,
			func(_ kmsg.Request, w kmsg.Response, code int16) {
				w.(*kmsg.DescribeUserSCRAMCredentialsResponse).ErrorCode = code
			})})
}

// scramMechanismCodes are Kafka's codes for the SCRAM mechanisms.
var scramMechanismCodes = map[string]int8{MechanismScramSHA256: 1, MechanismScramSHA512: 2}

func scramMechanismName(code int8) string {
	for name, c := range scramMechanismCodes {
		if c == code {
			return name
		}
	}
	return ""
}

func serveDescribeUserScramCredentials(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	if s.creds == nil {
		resp.ErrorCode = kerr.UnknownServerError.Code
		resp.ErrorMessage = kmsg.StringPtr("this broker has no user store")
		return resp, nil
	}
	users, err := s.creds.ScramUsers()
	if err != nil {
		resp.ErrorCode = s.errCode(err, kerr.UnknownServerError, "describe user scram credentials")
		return resp, nil
	}
	var names []string
	if len(req.Users) == 0 { // null or empty: every user, as Kafka (the Java client sends empty)
		for n := range users {
			names = append(names, n)
		}
		sort.Strings(names)
	} else {
		for _, u := range req.Users {
			names = append(names, u.Name)
		}
	}
	seen := map[string]int{}
	for _, n := range names {
		seen[n]++
	}
	for _, n := range names {
		r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		r.User = n
		ms, ok := users[n]
		switch {
		case seen[n] > 1:
			r.ErrorCode = kerr.DuplicateResource.Code
		case !ok:
			r.ErrorCode = kerr.ResourceNotFound.Code
			r.ErrorMessage = kmsg.StringPtr("no such user")
		default:
			for _, m := range []string{MechanismScramSHA256, MechanismScramSHA512} {
				if it, ok := ms[m]; ok {
					ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
					ci.Mechanism, ci.Iterations = scramMechanismCodes[m], int32(it)
					r.CredentialInfos = append(r.CredentialInfos, ci)
				}
			}
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
