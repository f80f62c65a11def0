package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// AlterUserScramCredentials: v0.
//
// Deletes and upserts users' SCRAM credentials in the Backend's
// Credentials. An upsertion carries the salted password (the client ran the
// iterations), from which StoredKey and ServerKey are derived and kept; the
// salted password itself is not. Needs ALTER on the cluster.
func init() {
	register(api{key: 51, min: 0, max: 0, serve: serveAlterUserScramCredentials,
		acl: wholeRequest(kmsg.ACLOperationAlter, kmsg.ACLResourceTypeCluster, nil,
			func(r kmsg.Request, w kmsg.Response, code int16) {
				req, resp := r.(*kmsg.AlterUserSCRAMCredentialsRequest), w.(*kmsg.AlterUserSCRAMCredentialsResponse)
				for _, u := range alterUserNames(req) {
					res := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
					res.User, res.ErrorCode = u, code
					resp.Results = append(resp.Results, res)
				}
			})})
}

// alterUserNames lists the users a request names, once each, in order.
func alterUserNames(req *kmsg.AlterUserSCRAMCredentialsRequest) []string {
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, d := range req.Deletions {
		add(d.Name)
	}
	for _, u := range req.Upsertions {
		add(u.Name)
	}
	return names
}

func serveAlterUserScramCredentials(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	errs := map[string]int16{}
	msgs := map[string]string{}
	fail := func(user string, code int16, msg string) {
		if errs[user] == 0 {
			errs[user], msgs[user] = code, msg
		}
	}
	for _, d := range req.Deletions {
		mech := scramMechanismName(d.Mechanism)
		if s.creds == nil || mech == "" {
			fail(d.Name, kerr.UnsupportedSaslMechanism.Code, "unknown SCRAM mechanism or no user store")
			continue
		}
		found, err := s.creds.DeleteScramCredential(d.Name, mech)
		switch {
		case err != nil:
			fail(d.Name, s.errCode(err, kerr.UnknownServerError, "delete scram credential"), err.Error())
		case !found:
			fail(d.Name, kerr.ResourceNotFound.Code, "no such credential")
		default:
			s.log.Info("SCRAM credential deleted", zap.String("user", d.Name), zap.String("mechanism", mech),
				zap.Stringer("by", c.principal))
		}
	}
	for _, u := range req.Upsertions {
		mech := scramMechanismName(u.Mechanism)
		if s.creds == nil || mech == "" {
			fail(u.Name, kerr.UnsupportedSaslMechanism.Code, "unknown SCRAM mechanism or no user store")
			continue
		}
		if u.Iterations < minScramIterations || len(u.Salt) == 0 || len(u.SaltedPassword) == 0 {
			fail(u.Name, kerr.UnacceptableCredential.Code, "iterations below 4096, or empty salt or password")
			continue
		}
		h := hashFor(mech)
		clientKey := hmacOf(h, u.SaltedPassword, []byte("Client Key"))
		hh := h()
		hh.Write(clientKey)
		stored, server := hh.Sum(nil), hmacOf(h, u.SaltedPassword, []byte("Server Key"))
		if err := s.creds.SetScramCredential(u.Name, mech, u.Salt, int(u.Iterations), stored, server); err != nil {
			fail(u.Name, s.errCode(err, kerr.UnknownServerError, "set scram credential"), err.Error())
			continue
		}
		s.log.Info("SCRAM credential set", zap.String("user", u.Name), zap.String("mechanism", mech),
			zap.Stringer("by", c.principal))
	}
	for _, n := range alterUserNames(req) {
		res := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		res.User, res.ErrorCode = n, errs[n]
		if m, ok := msgs[n]; ok {
			res.ErrorMessage = kmsg.StringPtr(m)
		}
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}
