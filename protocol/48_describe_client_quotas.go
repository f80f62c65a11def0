package protocol

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeClientQuotas: v0-1.
//
// Answers the stored quotas (quota.go) whose entity matches every component
// of the filter: an exact name, the default entity, or any entity of that
// type; with Strict, entities holding a type the filter does not name are
// left out. Entity types other than user and client-id (ip) hold no quotas
// here, so match nothing. Without a QuotaStore the answer is empty.
//
// Version notes: v1 flexible.
func init() {
	register(api{key: 48, min: 0, max: 1, serve: serveDescribeClientQuotas,
		acl: wholeRequest(kmsg.ACLOperationDescribeConfigs, kmsg.ACLResourceTypeCluster, nil,
			func(_ kmsg.Request, r kmsg.Response, code int16) {
				r.(*kmsg.DescribeClientQuotasResponse).ErrorCode = code
			})})
}

func serveDescribeClientQuotas(s *Server, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeClientQuotasRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClientQuotasResponse)
	store := s.quotaStore()
	if store == nil {
		return resp, nil
	}
	seen := map[string]bool{}
	for _, c := range req.Components {
		if seen[c.EntityType] || c.MatchType < 0 || c.MatchType > 2 || c.MatchType == 0 && c.Match == nil {
			resp.ErrorCode = kerr.InvalidRequest.Code
			resp.ErrorMessage = kmsg.StringPtr("bad filter component for entity type " + c.EntityType)
			return resp, nil
		}
		seen[c.EntityType] = true
	}
	cfgs, err := store.ClientQuotas()
	if err != nil {
		resp.ErrorCode = s.errCode(err, kerr.UnknownServerError, "describe client quotas")
		resp.ErrorMessage = kmsg.StringPtr(err.Error())
		return resp, nil
	}
	keys := make([]string, 0, len(cfgs))
	for k := range cfgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e, err := parseQuotaEntity(k)
		if err != nil || !quotaFilterMatches(req, e) {
			continue
		}
		entry := kmsg.NewDescribeClientQuotasResponseEntry()
		if e.hasUser {
			entry.Entity = append(entry.Entity, kmsg.DescribeClientQuotasResponseEntryEntity{Type: quotaUser, Name: e.user})
		}
		if e.hasClient {
			entry.Entity = append(entry.Entity, kmsg.DescribeClientQuotasResponseEntryEntity{Type: quotaClientID, Name: e.client})
		}
		names := make([]string, 0, len(cfgs[k]))
		for n := range cfgs[k] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			entry.Values = append(entry.Values, kmsg.DescribeClientQuotasResponseEntryValue{Key: n, Value: cfgs[k][n]})
		}
		resp.Entries = append(resp.Entries, entry)
	}
	return resp, nil
}

// quotaFilterMatches applies DescribeClientQuotas' filter to one entity.
func quotaFilterMatches(req *kmsg.DescribeClientQuotasRequest, e quotaEntity) bool {
	named := map[string]bool{}
	for _, c := range req.Components {
		named[c.EntityType] = true
		var has bool
		var name *string
		switch c.EntityType {
		case quotaUser:
			has, name = e.hasUser, e.user
		case quotaClientID:
			has, name = e.hasClient, e.client
		}
		if !has {
			return false
		}
		switch c.MatchType {
		case 0: // exact name
			if name == nil || *name != *c.Match {
				return false
			}
		case 1: // the default entity
			if name != nil {
				return false
			}
		}
	}
	if req.Strict {
		if e.hasUser && !named[quotaUser] || e.hasClient && !named[quotaClientID] {
			return false
		}
	}
	return true
}
