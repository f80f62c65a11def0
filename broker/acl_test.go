package broker

import (
	"context"
	"net/netip"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func openACLStore(t *testing.T, dir string, cfg AuthzConfig) (*Authorizer, func()) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := OpenAuthorizer(db, cfg)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return a, func() { db.Close() }
}

func TestAuthorize(t *testing.T) {
	cfg := DefaultAuthzConfig()
	cfg.LoopbackSuperuser = false
	cfg.SuperUsers = []string{"admin"}
	cfg.Groups = []string{"partners=alice", "partners=carol"}
	a, closeDB := openACLStore(t, t.TempDir(), cfg)
	defer closeDB()
	allow, deny := kmsg.ACLPermissionTypeAllow, kmsg.ACLPermissionTypeDeny
	topic, group, cluster := kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup, kmsg.ACLResourceTypeCluster
	lit, pre := kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed
	read, write, describe, create := kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDescribe, kmsg.ACLOperationCreate
	for _, r := range []ACL{
		{topic, pre, "ztf_", "Group:partners", "*", read, allow},
		{topic, pre, "ztf_", "User:packager", "*", write, allow},
		{cluster, lit, clusterResource, "User:packager", "*", create, allow},
		{topic, lit, "ztf_20180725_programid2", "User:carol", "*", kmsg.ACLOperationAll, deny},
		{topic, lit, "*", "User:auditor", "192.0.2.9", describe, allow},
		{group, lit, "shared", "User:bob", "*", read, allow},
	} {
		if err := a.AddACL(r); err != nil {
			t.Fatalf("add %v: %v", r, err)
		}
	}
	remote := netip.MustParseAddr("203.0.113.5")
	for _, tc := range []struct {
		name string
		user string
		addr netip.Addr
		op   kmsg.ACLOperation
		rt   kmsg.ACLResourceType
		res  string
		want bool
	}{
		{"anonymous reads public", "", remote, read, topic, "ztf_20180725_programid1", true},
		{"anonymous describes public", "", remote, describe, topic, "ztf_20180725_programid1", true},
		{"anonymous reads partnership", "", remote, read, topic, "ztf_20180725_programid2", false},
		{"anonymous writes public", "", remote, write, topic, "ztf_20180725_programid1", false},
		{"anonymous public group", "", remote, read, group, "kcat", true},
		{"anonymous creates", "", remote, create, cluster, clusterResource, false},
		{"loopback is no superuser when off", "", netip.MustParseAddr("127.0.0.1"), write, topic, "x", false},
		{"partner reads partnership by group", "alice", remote, read, topic, "ztf_20180725_programid2", true},
		{"partner describes (implied by READ)", "alice", remote, describe, topic, "ztf_20180725_programid2", true},
		{"partner reads public", "alice", remote, read, topic, "ztf_20180725_programid1", true},
		{"partner cannot write", "alice", remote, write, topic, "ztf_20180725_programid2", false},
		{"deny wins over group allow", "carol", remote, read, topic, "ztf_20180725_programid2", false},
		{"deny is literal", "carol", remote, read, topic, "ztf_20180726_programid2", true},
		{"non-member", "bob", remote, read, topic, "ztf_20180725_programid2", false},
		{"packager writes by prefix", "packager", remote, write, topic, "ztf_20180725_programid2", true},
		{"prefix is a prefix", "packager", remote, write, topic, "other", false},
		{"packager creates on cluster", "packager", remote, create, cluster, clusterResource, true},
		{"own group by prefix", "alice", remote, read, group, "alice-consumer", true},
		{"other's group refused", "alice", remote, read, group, "bob-consumer", false},
		{"a longer name is not a prefix", "al", remote, read, group, "alice-consumer", false},
		{"the bare user name is its own group", "alice", remote, read, group, "alice", true},
		{"prefix rule beats an ACL", "bob", remote, read, group, "shared", false},
		{"authenticated is not anonymous for public groups", "dave", remote, read, group, "kcat", false},
		{"host-restricted from its host", "auditor", netip.MustParseAddr("192.0.2.9"), describe, topic, "anything", true},
		{"host-restricted elsewhere", "auditor", remote, describe, topic, "anything", false},
		{"super user", "admin", remote, kmsg.ACLOperationDelete, topic, "ztf_20180725_programid2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.Authorize(context.Background(), tc.user, tc.addr, tc.op, tc.rt, tc.res); got != tc.want {
				t.Errorf("Authorize(%q, %v, %s %s %s) = %v, want %v", tc.user, tc.addr, tc.op, tc.rt, tc.res, got, tc.want)
			}
		})
	}
}

func TestAuthorizeLoopbackSuperuser(t *testing.T) {
	a, closeDB := openACLStore(t, t.TempDir(), DefaultAuthzConfig())
	defer closeDB()
	for _, addr := range []string{"127.0.0.1", "::1", "::ffff:127.0.0.1"} {
		if !a.Authorize(context.Background(), "", netip.MustParseAddr(addr), kmsg.ACLOperationAlter, kmsg.ACLResourceTypeCluster, clusterResource) {
			t.Errorf("%s: loopback superuser refused", addr)
		}
	}
	if a.Authorize(context.Background(), "", netip.MustParseAddr("10.0.0.1"), kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, "ztf_20180725_programid1") {
		t.Error("remote anonymous may write")
	}
}

// TestACLsPersistAndAdmin: rules added through CreateAcls survive a
// reopen, DescribeAcls filters them and DeleteAcls removes what it matches.
func TestACLsPersistAndAdmin(t *testing.T) {
	dir := t.TempDir()
	a, closeDB := openACLStore(t, dir, DefaultAuthzConfig())
	create := kmsg.NewPtrCreateACLsRequest()
	create.Version = 2
	for _, c := range []struct {
		name    string
		pattern kmsg.ACLResourcePatternType
		prin    string
		op      kmsg.ACLOperation
	}{
		{"ztf_", kmsg.ACLResourcePatternTypePrefixed, "Group:partners", kmsg.ACLOperationRead},
		{"ztf_20180725_programid2", kmsg.ACLResourcePatternTypeLiteral, "User:eve", kmsg.ACLOperationRead},
		{"bad", kmsg.ACLResourcePatternTypeMatch, "User:eve", kmsg.ACLOperationRead},
	} {
		cr := kmsg.NewCreateACLsRequestCreation()
		cr.ResourceType, cr.ResourceName, cr.ResourcePatternType = kmsg.ACLResourceTypeTopic, c.name, c.pattern
		cr.Principal, cr.Host, cr.Operation, cr.PermissionType = c.prin, "*", c.op, kmsg.ACLPermissionTypeAllow
		create.Creations = append(create.Creations, cr)
	}
	res := a.CreateACLs(context.Background(), create)
	if res.Results[0].ErrorCode != 0 || res.Results[1].ErrorCode != 0 || res.Results[2].ErrorCode == 0 {
		t.Fatalf("create results %+v: want two stored, MATCH refused", res.Results)
	}
	closeDB()

	a, closeDB = openACLStore(t, dir, DefaultAuthzConfig())
	defer closeDB()
	if got := len(a.ACLs()); got != 2 {
		t.Fatalf("%d rules after reopen, want 2", got)
	}
	describe := kmsg.NewPtrDescribeACLsRequest()
	describe.Version = 2
	describe.ResourceType, describe.ResourcePatternType = kmsg.ACLResourceTypeTopic, kmsg.ACLResourcePatternTypeMatch
	describe.ResourceName = kmsg.StringPtr("ztf_20180725_programid2")
	describe.Operation, describe.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	if got := a.DescribeACLs(context.Background(), describe).Resources; len(got) != 2 {
		t.Errorf("MATCH on a programid2 topic: %d resources, want the prefix and the literal", len(got))
	}
	del := kmsg.NewPtrDeleteACLsRequest()
	del.Version = 2
	f := kmsg.NewDeleteACLsRequestFilter()
	f.ResourceType, f.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	f.Principal = kmsg.StringPtr("User:eve")
	f.Operation, f.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	del.Filters = append(del.Filters, f)
	if got := a.DeleteACLs(context.Background(), del).Results[0].MatchingACLs; len(got) != 1 || got[0].Principal != "User:eve" {
		t.Errorf("deleted %+v, want eve's rule", got)
	}
	if got := a.ACLs(); len(got) != 1 || got[0].Principal != "Group:partners" {
		t.Errorf("left %+v", got)
	}
}

func TestACLKeyRoundTrip(t *testing.T) {
	r := ACL{kmsg.ACLResourceTypeGroup, kmsg.ACLResourcePatternTypePrefixed, "a/b\x00c", "User:x", "*", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeDeny}
	got, ok := parseACLKey(aclKey(r))
	if !ok || got != r {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
}
