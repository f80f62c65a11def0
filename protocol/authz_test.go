package protocol

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rulesAuthz allows exactly the "OP RESOURCETYPE name" lines it holds, and
// remembers the address of the last principal it judged.
type rulesAuthz struct {
	allow map[string]bool
	seen  chan netip.Addr
}

func (a *rulesAuthz) Authorize(_ context.Context, user string, addr netip.Addr, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	select {
	case a.seen <- addr:
	default:
	}
	return a.allow[op.String()+" "+rt.String()+" "+name]
}

// listingGroups lists two groups.
type listingGroups struct{ stubGroups }

func (listingGroups) ListGroups(_ context.Context, r *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
	for _, g := range []string{"alice-1", "bob-1"} {
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group = g
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}

// OffsetFetch answers offset 5 of partition 0 of pub and priv.
func (listingGroups) OffsetFetch(_ context.Context, r *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	for _, n := range []string{"pub", "priv"} {
		t := kmsg.NewOffsetFetchResponseTopic()
		t.Topic = n
		p := kmsg.NewOffsetFetchResponseTopicPartition()
		p.Offset = 5
		t.Partitions = append(t.Partitions, p)
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

// startAuthzServer is startServer with an Authorizer set before Serve.
func startAuthzServer(t *testing.T, a Authorizer) *testServer {
	t.Helper()
	b := newMemBackend()
	s, err := NewServer(Config{}, b, listingGroups{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetAuthorizer(a)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve returned %v", err)
		}
	})
	return &testServer{s: s, b: b, addr: ln.Addr().String()}
}

func TestRegisterRequiresACL(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "authorization") {
			t.Fatalf("register without acl: recovered %v, want a panic naming the authorization", r)
		}
		if _, ok := apis[9999]; ok {
			t.Fatal("key registered despite the panic")
		}
	}()
	register(api{key: 9999, min: 0, max: 0, serve: func(*Server, *conn, kmsg.Request) (kmsg.Response, error) { return nil, nil }})
}

// TestEveryKeyDeclaresAccess lists what each served key checks: the
// table a reviewer reads to see that no key is unchecked by accident.
func TestEveryKeyDeclaresAccess(t *testing.T) {
	keys := make([]int, 0, len(apis))
	for k := range apis {
		keys = append(keys, int(k))
	}
	sort.Ints(keys)
	for _, k := range keys {
		a := apis[int16(k)]
		if a.acl.doc == "" {
			t.Errorf("%s: no access declared", kmsg.NameForKey(int16(k)))
		}
		t.Logf("%2d %-24s %s", k, kmsg.NameForKey(int16(k)), a.acl.doc)
	}
}

func TestAuthorizationDenials(t *testing.T) {
	a := &rulesAuthz{allow: map[string]bool{
		"DESCRIBE TOPIC pub": true, "READ TOPIC pub": true,
		"DESCRIBE GROUP alice-1": true, "READ GROUP alice-1": true,
	}, seen: make(chan netip.Addr, 1)}
	ts := startAuthzServer(t, a)
	ctx := context.Background()
	ts.b.CreateTopic(ctx, "pub", 1, nil, false)
	ts.b.CreateTopic(ctx, "priv", 1, nil, false)

	t.Run("principal", func(t *testing.T) {
		for len(a.seen) > 0 {
			<-a.seen
		}
		rawRoundTrip(t, ts.addr, kmsg.NewPtrDescribeClusterRequest())
		if addr := <-a.seen; !addr.IsLoopback() {
			t.Errorf("authorizer saw address %v, want loopback", addr)
		}
	})

	metadata := func(auto bool, topics ...string) *kmsg.MetadataResponse {
		r := kmsg.NewPtrMetadataRequest()
		r.Version, r.AllowAutoTopicCreation = 12, auto
		if topics != nil {
			r.Topics = []kmsg.MetadataRequestTopic{}
		}
		for _, n := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(n)
			r.Topics = append(r.Topics, rt)
		}
		return rawRoundTrip(t, ts.addr, r).(*kmsg.MetadataResponse)
	}
	t.Run("metadata hides", func(t *testing.T) {
		got := metadata(false)
		if len(got.Topics) != 1 || *got.Topics[0].Topic != "pub" {
			t.Errorf("all topics: %+v, want only pub", got.Topics)
		}
		byName := metadata(false, "priv", "pub")
		if byName.Topics[0].ErrorCode != kerr.TopicAuthorizationFailed.Code || len(byName.Topics[0].Partitions) != 0 {
			t.Errorf("priv by name: code %d, %d partitions", byName.Topics[0].ErrorCode, len(byName.Topics[0].Partitions))
		}
		if byName.Topics[1].ErrorCode != 0 {
			t.Errorf("pub by name: code %d", byName.Topics[1].ErrorCode)
		}
	})
	t.Run("auto-create needs CREATE", func(t *testing.T) {
		a.allow["DESCRIBE TOPIC new"] = true
		defer delete(a.allow, "DESCRIBE TOPIC new")
		got := metadata(true, "new")
		if got.Topics[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
			t.Errorf("auto-create without CREATE: code %d", got.Topics[0].ErrorCode)
		}
		if _, _, err := ts.b.Topic(ctx, "new", false); err == nil {
			t.Error("topic created without CREATE")
		}
	})

	produce := kmsg.NewPtrProduceRequest()
	produce.Version, produce.Acks, produce.TimeoutMillis = 7, 1, 1000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "pub"
	pt.Partitions = []kmsg.ProduceRequestTopicPartition{kmsg.NewProduceRequestTopicPartition()}
	produce.Topics = append(produce.Topics, pt)

	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version, fetch.MaxBytes = 11, 1<<20
	for _, n := range []string{"pub", "priv"} {
		ft := kmsg.NewFetchRequestTopic()
		ft.Topic = n
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.PartitionMaxBytes = 1 << 20
		ft.Partitions = append(ft.Partitions, fp)
		fetch.Topics = append(fetch.Topics, ft)
	}

	create := kmsg.NewPtrCreateTopicsRequest()
	create.Version = 5
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = "made", 1, 1
	create.Topics = append(create.Topics, ct)

	del := kmsg.NewPtrDeleteTopicsRequest()
	del.Version, del.TopicNames = 3, []string{"priv"}

	configs := kmsg.NewPtrDescribeConfigsRequest()
	configs.Version = 3
	for _, r := range []struct {
		t    kmsg.ConfigResourceType
		name string
	}{{kmsg.ConfigResourceTypeBroker, ""}, {kmsg.ConfigResourceTypeTopic, "pub"}} {
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = r.t, r.name
		configs.Resources = append(configs.Resources, rr)
	}

	join := kmsg.NewPtrJoinGroupRequest()
	join.Version, join.Group, join.ProtocolType = 5, "bob-1", "consumer"
	joinOK := kmsg.NewPtrJoinGroupRequest()
	joinOK.Version, joinOK.Group, joinOK.ProtocolType = 5, "alice-1", "consumer"

	describeGroups := kmsg.NewPtrDescribeGroupsRequest()
	describeGroups.Version, describeGroups.Groups = 4, []string{"alice-1", "bob-1"}

	initPID := kmsg.NewPtrInitProducerIDRequest()
	initPID.Version = 4

	createACLs := kmsg.NewPtrCreateACLsRequest()
	createACLs.Version = 2
	createACLs.Creations = append(createACLs.Creations, kmsg.NewCreateACLsRequestCreation())

	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Version = 5
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "priv"
	lt.Partitions = append(lt.Partitions, kmsg.NewListOffsetsRequestTopicPartition())
	lo.Topics = append(lo.Topics, lt)

	tfa, gfa, cfa := kerr.TopicAuthorizationFailed.Code, kerr.GroupAuthorizationFailed.Code, kerr.ClusterAuthorizationFailed.Code
	for _, tc := range []struct {
		name string
		req  kmsg.Request
		want []int16
		code func(kmsg.Response) []int16
	}{
		{"produce without WRITE", produce, []int16{tfa}, func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode}
		}},
		{"fetch pub and priv", fetch, []int16{0, tfa}, func(r kmsg.Response) []int16 {
			ts := r.(*kmsg.FetchResponse).Topics
			return []int16{ts[0].Partitions[0].ErrorCode, ts[1].Partitions[0].ErrorCode}
		}},
		{"list offsets priv", lo, []int16{tfa}, func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0].ErrorCode}
		}},
		{"create topic", create, []int16{tfa}, func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode}
		}},
		{"delete topic", del, []int16{tfa}, func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.DeleteTopicsResponse).Topics[0].ErrorCode}
		}},
		{"describe configs", configs, []int16{cfa, tfa}, func(r kmsg.Response) []int16 {
			rs := r.(*kmsg.DescribeConfigsResponse).Resources
			return []int16{rs[0].ErrorCode, rs[1].ErrorCode}
		}},
		{"join another's group", join, []int16{gfa}, func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.JoinGroupResponse).ErrorCode}
		}},
		{"join own group", joinOK, []int16{0}, func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.JoinGroupResponse).ErrorCode}
		}},
		{"describe groups", describeGroups, []int16{gfa}, func(r kmsg.Response) []int16 {
			var codes []int16
			for _, g := range r.(*kmsg.DescribeGroupsResponse).Groups {
				if g.ErrorCode != 0 {
					codes = append(codes, g.ErrorCode)
				}
			}
			return codes
		}},
		{"init producer id without WRITE", initPID, []int16{cfa}, func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.InitProducerIDResponse).ErrorCode}
		}},
		{"describe cluster", kmsg.NewPtrDescribeClusterRequest(), []int16{cfa}, func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.DescribeClusterResponse).ErrorCode}
		}},
		{"create acls", createACLs, []int16{cfa}, func(r kmsg.Response) []int16 {
			return []int16{r.(*kmsg.CreateACLsResponse).Results[0].ErrorCode}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.code(rawRoundTrip(t, ts.addr, tc.req))
			if len(got) != len(tc.want) {
				t.Fatalf("codes %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("codes %v, want %v", got, tc.want)
				}
			}
		})
	}

	t.Run("offset commit per topic", func(t *testing.T) {
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Version, r.Group = 7, "alice-1"
		for _, n := range []string{"pub", "priv"} {
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic = n
			rt.Partitions = append(rt.Partitions, kmsg.NewOffsetCommitRequestTopicPartition())
			r.Topics = append(r.Topics, rt)
		}
		got := rawRoundTrip(t, ts.addr, r).(*kmsg.OffsetCommitResponse)
		// The stub answers no topic: only the refused one is here.
		if len(got.Topics) != 1 || got.Topics[0].Topic != "priv" || got.Topics[0].Partitions[0].ErrorCode != tfa {
			t.Errorf("topics %+v, want priv refused", got.Topics)
		}
	})
	t.Run("offset delete per topic", func(t *testing.T) {
		a.allow["DELETE GROUP alice-1"] = true
		defer delete(a.allow, "DELETE GROUP alice-1")
		r := kmsg.NewPtrOffsetDeleteRequest()
		r.Group = "alice-1"
		rt := kmsg.NewOffsetDeleteRequestTopic()
		rt.Topic = "priv"
		rt.Partitions = append(rt.Partitions, kmsg.NewOffsetDeleteRequestTopicPartition())
		r.Topics = append(r.Topics, rt)
		got := rawRoundTrip(t, ts.addr, r).(*kmsg.OffsetDeleteResponse)
		if got.ErrorCode != 0 || len(got.Topics) != 1 || got.Topics[0].Partitions[0].ErrorCode != tfa {
			t.Errorf("response %+v, want priv refused", got)
		}
	})
	t.Run("offset fetch hides topics", func(t *testing.T) {
		r := kmsg.NewPtrOffsetFetchRequest()
		r.Version, r.Group = 5, "alice-1"
		got := rawRoundTrip(t, ts.addr, r).(*kmsg.OffsetFetchResponse)
		if len(got.Topics) != 1 || got.Topics[0].Topic != "pub" {
			t.Errorf("all topics: %+v, want only pub", got.Topics)
		}
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic, rt.Partitions = "priv", []int32{0}
		r.Topics = []kmsg.OffsetFetchRequestTopic{rt}
		got = rawRoundTrip(t, ts.addr, r).(*kmsg.OffsetFetchResponse)
		if len(got.Topics) != 2 || got.Topics[1].Partitions[0].ErrorCode != tfa || got.Topics[1].Partitions[0].Offset != -1 {
			t.Errorf("named topics: %+v, want priv refused", got.Topics)
		}
	})
	t.Run("list groups hides", func(t *testing.T) {
		r := kmsg.NewPtrListGroupsRequest()
		r.Version = 3
		got := rawRoundTrip(t, ts.addr, r).(*kmsg.ListGroupsResponse)
		if len(got.Groups) != 1 || got.Groups[0].Group != "alice-1" {
			t.Errorf("groups %+v, want only alice-1", got.Groups)
		}
	})
	t.Run("acls without ACLAdmin", func(t *testing.T) {
		a.allow["DESCRIBE CLUSTER kafka-cluster"] = true
		defer delete(a.allow, "DESCRIBE CLUSTER kafka-cluster")
		r := kmsg.NewPtrDescribeACLsRequest()
		r.Version = 2
		if got := rawRoundTrip(t, ts.addr, r).(*kmsg.DescribeACLsResponse); got.ErrorCode != kerr.SecurityDisabled.Code {
			t.Errorf("code %d, want SECURITY_DISABLED", got.ErrorCode)
		}
	})
}
