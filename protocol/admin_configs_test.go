package protocol

import (
	"context"
	"net/netip"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestAdminKeysAuthorization: IncrementalAlterConfigs and AlterConfigs
// need ALTER_CONFIGS on the topic (and refuse broker configs, which are
// read-only), DescribeLogDirs DESCRIBE on the cluster, DescribeProducers
// READ on the topic; allowed, each reaches the Backend.
func TestAdminKeysAuthorization(t *testing.T) {
	a := &rulesAuthz{allow: map[string]bool{
		"ALTER_CONFIGS TOPIC pub": true, "READ TOPIC pub": true, "ALTER_CONFIGS CLUSTER kafka-cluster": true,
	}, seen: make(chan netip.Addr, 1)}
	ts := startAuthzServer(t, a)
	ctx := context.Background()
	ts.b.CreateTopic(ctx, "pub", 1, nil, false)
	ts.b.CreateTopic(ctx, "priv", 1, nil, false)

	incr := kmsg.NewPtrIncrementalAlterConfigsRequest()
	incr.Version = 1
	for _, r := range []struct {
		t    kmsg.ConfigResourceType
		name string
		key  string
	}{{kmsg.ConfigResourceTypeTopic, "pub", "retention.ms"}, {kmsg.ConfigResourceTypeTopic, "priv", "retention.ms"},
		{kmsg.ConfigResourceTypeTopic, "pub", "no.such"}, {kmsg.ConfigResourceTypeBroker, "", "num.partitions"}} {
		rr := kmsg.NewIncrementalAlterConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = r.t, r.name
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = r.key, kmsg.StringPtr("3600000")
		rr.Configs = append(rr.Configs, c)
		incr.Resources = append(incr.Resources, rr)
	}
	got := rawRoundTrip(t, ts.addr, incr).(*kmsg.IncrementalAlterConfigsResponse)
	want := []int16{0, kerr.TopicAuthorizationFailed.Code, kerr.InvalidConfig.Code, kerr.InvalidRequest.Code}
	for i, r := range got.Resources {
		if r.ErrorCode != want[i] {
			t.Errorf("incremental alter %s %q: code %d, want %d (%v)", r.ResourceType, r.ResourceName, r.ErrorCode, want[i], r.ErrorMessage)
		}
	}
	if cs, _ := ts.b.TopicConfigs(ctx, "pub", []string{"retention.ms"}); *cs[0].Value != "3600000" {
		t.Errorf("retention.ms of pub after the alter: %s", *cs[0].Value)
	}

	alter := kmsg.NewPtrAlterConfigsRequest()
	alter.Version = 2
	for _, n := range []string{"pub", "priv"} {
		rr := kmsg.NewAlterConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, n
		c := kmsg.NewAlterConfigsRequestResourceConfig()
		c.Name, c.Value = "segment.bytes", kmsg.StringPtr("1048576")
		rr.Configs = append(rr.Configs, c)
		alter.Resources = append(alter.Resources, rr)
	}
	ga := rawRoundTrip(t, ts.addr, alter).(*kmsg.AlterConfigsResponse)
	if ga.Resources[0].ErrorCode != 0 || ga.Resources[1].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("alter configs codes %d %d", ga.Resources[0].ErrorCode, ga.Resources[1].ErrorCode)
	}
	// AlterConfigs replaces: retention.ms, not named, is back to its default.
	if cs, _ := ts.b.TopicConfigs(ctx, "pub", nil); cs[0].Source != kmsg.ConfigSourceDefaultConfig || cs[1].Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("after AlterConfigs of segment.bytes: %s %v, %s %v", cs[0].Name, cs[0].Source, cs[1].Name, cs[1].Source)
	}

	dirs := kmsg.NewPtrDescribeLogDirsRequest()
	dirs.Version = 4
	if r := rawRoundTrip(t, ts.addr, dirs).(*kmsg.DescribeLogDirsResponse); r.ErrorCode != kerr.ClusterAuthorizationFailed.Code || len(r.Dirs) != 0 {
		t.Errorf("describe log dirs without DESCRIBE on the cluster: code %d, %d dirs", r.ErrorCode, len(r.Dirs))
	}
	a.allow["DESCRIBE CLUSTER kafka-cluster"] = true
	if r := rawRoundTrip(t, ts.addr, dirs).(*kmsg.DescribeLogDirsResponse); r.ErrorCode != 0 || len(r.Dirs) != 1 || len(r.Dirs[0].Topics) != 2 {
		t.Errorf("describe log dirs: %+v", r)
	}

	prod := kmsg.NewPtrDescribeProducersRequest()
	for _, n := range []string{"pub", "priv"} {
		rt := kmsg.NewDescribeProducersRequestTopic()
		rt.Topic, rt.Partitions = n, []int32{0, 7}
		prod.Topics = append(prod.Topics, rt)
	}
	gp := rawRoundTrip(t, ts.addr, prod).(*kmsg.DescribeProducersResponse)
	codes := []int16{gp.Topics[0].Partitions[0].ErrorCode, gp.Topics[0].Partitions[1].ErrorCode, gp.Topics[1].Partitions[0].ErrorCode}
	if codes[0] != 0 || codes[1] != kerr.UnknownTopicOrPartition.Code || codes[2] != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("describe producers codes %v", codes)
	}
}
