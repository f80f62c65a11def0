package protocol

import (
	"fmt"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AlterClientQuotas: v0-1.
//
// Sets or removes producer_byte_rate and consumer_byte_rate (bytes/s, > 0)
// on a user, client-id or user and client-id entity, named or default (null
// name); each entry is written to the QuotaStore with pebble.Sync before the
// answer, and holds the next request of every connection it matches.
// Other quota names (request_percentage, controller_mutation_rate) and
// entity types (ip) are not enforced here and are refused with
// INVALID_REQUEST rather than stored and ignored, as is every entry when
// the Backend keeps no quotas.
//
// Version notes: v1 flexible.
func init() {
	register(api{key: 49, min: 0, max: 1, serve: serveAlterClientQuotas,
		acl: wholeRequest(kmsg.ACLOperationAlterConfigs, kmsg.ACLResourceTypeCluster, nil,
			func(kreq kmsg.Request, r kmsg.Response, code int16) {
				resp := r.(*kmsg.AlterClientQuotasResponse)
				for _, re := range kreq.(*kmsg.AlterClientQuotasRequest).Entries {
					out := kmsg.NewAlterClientQuotasResponseEntry()
					out.ErrorCode = code
					for _, c := range re.Entity {
						out.Entity = append(out.Entity, kmsg.AlterClientQuotasResponseEntryEntity{Type: c.Type, Name: c.Name})
					}
					resp.Entries = append(resp.Entries, out)
				}
			})})
}

func serveAlterClientQuotas(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterClientQuotasRequest)
	resp := req.ResponseKind().(*kmsg.AlterClientQuotasResponse)
	store := s.quotaStore()
	for _, re := range req.Entries {
		out := kmsg.NewAlterClientQuotasResponseEntry()
		for _, c := range re.Entity {
			out.Entity = append(out.Entity, kmsg.AlterClientQuotasResponseEntryEntity{Type: c.Type, Name: c.Name})
		}
		code, msg := alterClientQuota(s, store, re, req.ValidateOnly)
		if code != 0 {
			out.ErrorCode, out.ErrorMessage = code, kmsg.StringPtr(msg)
		}
		resp.Entries = append(resp.Entries, out)
	}
	return resp, nil
}

func alterClientQuota(s *Server, store QuotaStore, re kmsg.AlterClientQuotasRequestEntry, validateOnly bool) (int16, string) {
	if store == nil {
		return kerr.InvalidRequest.Code, "this broker stores no client quotas"
	}
	var e quotaEntity
	for _, c := range re.Entity {
		switch {
		case c.Type == quotaUser && !e.hasUser:
			e.hasUser, e.user = true, c.Name
		case c.Type == quotaClientID && !e.hasClient:
			e.hasClient, e.client = true, c.Name
		default:
			return kerr.InvalidRequest.Code, fmt.Sprintf("entity type %q unsupported or repeated (user and client-id are)", c.Type)
		}
	}
	if !e.hasUser && !e.hasClient {
		return kerr.InvalidRequest.Code, "empty entity"
	}
	key := e.key()
	cfgs, err := store.ClientQuotas()
	if err != nil {
		return s.errCode(err, kerr.UnknownServerError, "alter client quotas"), err.Error()
	}
	values := map[string]float64{}
	for k, v := range cfgs[key] {
		values[k] = v
	}
	for _, op := range re.Ops {
		if op.Key != producerByteRate && op.Key != consumerByteRate {
			return kerr.InvalidRequest.Code, fmt.Sprintf("quota %q unsupported (producer_byte_rate and consumer_byte_rate are)", op.Key)
		}
		if op.Remove {
			delete(values, op.Key)
			continue
		}
		if !(op.Value > 0) || math.IsInf(op.Value, 0) {
			return kerr.InvalidRequest.Code, fmt.Sprintf("quota %s %v: must be a positive number of bytes/s", op.Key, op.Value)
		}
		values[op.Key] = op.Value
	}
	if validateOnly {
		return 0, ""
	}
	if err := store.SetClientQuotas(key, values); err != nil {
		return s.errCode(err, kerr.UnknownServerError, "alter client quotas"), err.Error()
	}
	s.m.quotas.set(key, values)
	return 0, ""
}
