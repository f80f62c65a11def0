package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AuthzConfig is who may do what when no ACL says otherwise, and how user
// names map to named groups. The yaml tags are the settings' names.
//
// The safe default: anonymous clients may READ and DESCRIBE the public
// topics (PublicTopics, globs; ztf_*_programid1) and use any consumer group
// (PublicGroups, "*": kcat and ad hoc consumers need no setup; a survey that
// wants anonymous groups kept apart sets a prefix such as public-*);
// everything else needs an ACL, or a connection from loopback while
// LoopbackSuperuser is set (so that `ztfbroker serve` on a laptop and the
// in-process packager behave as before).
type AuthzConfig struct {
	// LoopbackSuperuser: connections from 127.0.0.0/8 and ::1 may do
	// anything. Off in a production config, where local tools log in.
	LoopbackSuperuser bool `yaml:"authz.loopback.superuser"`
	// SuperUsers may do anything (Kafka's super.users, bare names).
	SuperUsers []string `yaml:"authz.super.users"`
	// PublicTopics are globs (path.Match: * matches any run of
	// characters, ? one) of topics anyone, anonymous included, may READ and
	// DESCRIBE.
	PublicTopics []string `yaml:"authz.public.topics"`
	// PublicGroups are globs of consumer groups anonymous clients may use
	// (READ, DESCRIBE).
	PublicGroups []string `yaml:"authz.public.groups"`
	// GroupPrefixUser: an authenticated user may only use consumer groups
	// named after it: its user name, alone or followed by '-', '_' or '.'
	// (alice, alice-night; not alice2, which would be user al's), and may use all of those
	// (READ, DESCRIBE, DELETE) without an ACL.
	GroupPrefixUser bool `yaml:"authz.group.prefix.user"`
	// Groups names groups of users for Group:<name> ACL principals, as
	// group=user items (partners=alice,partners=bob).
	Groups []string `yaml:"authz.groups"`
}

// DefaultAuthzConfig is the safe default described at AuthzConfig.
func DefaultAuthzConfig() AuthzConfig {
	return AuthzConfig{
		LoopbackSuperuser: true,
		SuperUsers:        []string{},
		Groups:            []string{},
		PublicTopics:      []string{"ztf_*_programid1"},
		PublicGroups:      []string{"*"},
		GroupPrefixUser:   true,
	}
}

// Validate names every bad setting.
func (c AuthzConfig) Validate() error {
	var errs []error
	for _, g := range append(append([]string{}, c.PublicTopics...), c.PublicGroups...) {
		if _, err := path.Match(g, ""); err != nil {
			errs = append(errs, fmt.Errorf("authz.public.*: glob %q: %w", g, err))
		}
	}
	for _, m := range c.Groups {
		if g, u, ok := strings.Cut(m, "="); !ok || g == "" || u == "" {
			errs = append(errs, fmt.Errorf("authz.groups: %q: want group=user", m))
		}
	}
	return errors.Join(errs...)
}

// ACL is one rule, as Kafka's CreateAcls states it. Principal is
// User:<name>, User:* (anyone, anonymous included: anonymous is
// User:ANONYMOUS) or Group:<name> (AuthzConfig.Groups); Host is * or an IP.
// Pattern is LITERAL (the name, or * for every resource of the type) or
// PREFIXED; ztfbroker's globs are only the built-in public rules.
type ACL struct {
	ResourceType kmsg.ACLResourceType
	Pattern      kmsg.ACLResourcePatternType
	Resource     string
	Principal    string
	Host         string
	Operation    kmsg.ACLOperation
	Permission   kmsg.ACLPermissionType
}

func (a ACL) String() string {
	return fmt.Sprintf("%s %s %s %s:%s %s %s@%s", a.Permission, a.Operation, a.ResourceType, a.Pattern, a.Resource,
		"for", a.Principal, a.Host)
}

// Validate checks a rule to be stored.
func (a ACL) Validate() error {
	switch {
	case a.ResourceType != kmsg.ACLResourceTypeTopic && a.ResourceType != kmsg.ACLResourceTypeGroup && a.ResourceType != kmsg.ACLResourceTypeCluster:
		return fmt.Errorf("resource type %s: want TOPIC, GROUP or CLUSTER", a.ResourceType)
	case a.Pattern != kmsg.ACLResourcePatternTypeLiteral && a.Pattern != kmsg.ACLResourcePatternTypePrefixed:
		return fmt.Errorf("pattern type %s: want LITERAL or PREFIXED", a.Pattern)
	case a.Resource == "":
		return errors.New("empty resource name")
	case a.ResourceType == kmsg.ACLResourceTypeCluster && a.Resource != clusterResource:
		return fmt.Errorf("cluster resource %q: the cluster is %q", a.Resource, clusterResource)
	case !strings.HasPrefix(a.Principal, "User:") && !strings.HasPrefix(a.Principal, "Group:"):
		return fmt.Errorf("principal %q: want User:<name>, User:* or Group:<name>", a.Principal)
	case a.Operation < kmsg.ACLOperationAll || a.Operation > kmsg.ACLOperationIdempotentWrite || a.Operation == kmsg.ACLOperationClusterAction:
		return fmt.Errorf("operation %s not supported", a.Operation)
	case a.Permission != kmsg.ACLPermissionTypeAllow && a.Permission != kmsg.ACLPermissionTypeDeny:
		return fmt.Errorf("permission %s: want ALLOW or DENY", a.Permission)
	}
	if a.Host != "*" {
		if _, err := netip.ParseAddr(a.Host); err != nil {
			return fmt.Errorf("host %q: want * or an IP address", a.Host)
		}
	}
	return nil
}

// clusterResource is Kafka's name for the one cluster resource.
const clusterResource = "kafka-cluster"

// aclKeyPrefix starts every ACL's key (doc.go, "Metadata keys").
const aclKeyPrefix = "acl/"

// aclKey is acl/<type:u8><pattern:u8><resource:s><principal:s><host:s><operation:u8><permission:u8>;
// the value is empty: the key is the rule.
func aclKey(a ACL) []byte {
	k := []byte(aclKeyPrefix)
	k = append(k, byte(a.ResourceType), byte(a.Pattern))
	for _, s := range []string{a.Resource, a.Principal, a.Host} {
		k = binary.AppendUvarint(k, uint64(len(s)))
		k = append(k, s...)
	}
	return append(k, byte(a.Operation), byte(a.Permission))
}

func parseACLKey(k []byte) (ACL, bool) {
	k, ok := bytes.CutPrefix(k, []byte(aclKeyPrefix))
	if !ok || len(k) < 2 {
		return ACL{}, false
	}
	a := ACL{ResourceType: kmsg.ACLResourceType(k[0]), Pattern: kmsg.ACLResourcePatternType(k[1])}
	k = k[2:]
	var fields [3]string
	for i := range fields {
		n, w := binary.Uvarint(k)
		if w <= 0 || uint64(len(k)-w) < n {
			return ACL{}, false
		}
		fields[i], k = string(k[w:w+int(n)]), k[w+int(n):]
	}
	if len(k) != 2 {
		return ACL{}, false
	}
	a.Resource, a.Principal, a.Host = fields[0], fields[1], fields[2]
	a.Operation, a.Permission = kmsg.ACLOperation(k[0]), kmsg.ACLPermissionType(k[1])
	return a, true
}

// Authorizer judges requests by AuthzConfig and the ACLs stored in the
// metadata store; it implements protocol.Authorizer and protocol.ACLAdmin.
// The rules are held in memory and written through (pebble.Sync) before a
// change is acknowledged.
type Authorizer struct {
	cfg    AuthzConfig
	db     *pebble.DB
	super  map[string]bool
	member map[string][]string // user -> its groups

	mu   sync.RWMutex
	acls []ACL
}

// OpenAuthorizer loads the ACLs of db (the broker's Meta()).
func OpenAuthorizer(db *pebble.DB, cfg AuthzConfig) (*Authorizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Authorizer{cfg: cfg, db: db, super: map[string]bool{}, member: map[string][]string{}}
	for _, u := range cfg.SuperUsers {
		a.super[u] = true
	}
	for _, m := range cfg.Groups {
		g, u, _ := strings.Cut(m, "=")
		a.member[u] = append(a.member[u], g)
	}
	acls, err := loadACLs(db)
	if err != nil {
		return nil, err
	}
	a.acls = acls
	return a, nil
}

func loadACLs(db *pebble.DB) ([]ACL, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(aclKeyPrefix), UpperBound: []byte("acl0")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var acls []ACL
	for it.First(); it.Valid(); it.Next() {
		a, ok := parseACLKey(it.Key())
		if !ok {
			return nil, fmt.Errorf("acl: bad key %q", it.Key())
		}
		acls = append(acls, a)
	}
	return acls, it.Error()
}

// ACLs returns every stored rule.
func (a *Authorizer) ACLs() []ACL {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return append([]ACL(nil), a.acls...)
}

// AddACL stores a rule (adding one already stored changes nothing).
func (a *Authorizer) AddACL(r ACL) error {
	if err := r.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, have := range a.acls {
		if have == r {
			return nil
		}
	}
	if err := a.db.Set(aclKey(r), nil, pebble.Sync); err != nil {
		return fmt.Errorf("acl: store: %w", err)
	}
	a.acls = append(a.acls, r)
	return nil
}

// RemoveACLs deletes the rules match accepts and returns them.
func (a *Authorizer) RemoveACLs(match func(ACL) bool) ([]ACL, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.db.NewBatch()
	defer b.Close()
	var gone []ACL
	kept := make([]ACL, 0, len(a.acls))
	for _, r := range a.acls {
		if match(r) {
			gone = append(gone, r)
			b.Delete(aclKey(r), nil)
			continue
		}
		kept = append(kept, r)
	}
	if len(gone) == 0 {
		return nil, nil
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("acl: delete: %w", err)
	}
	a.acls = kept
	return gone, nil
}

// Authorize implements protocol.Authorizer: super users and (when set)
// loopback may do anything; otherwise a matching DENY rule refuses, and a
// matching ALLOW rule or a built-in rule (public topics and groups, the
// user's own groups) allows.
func (a *Authorizer) Authorize(_ context.Context, user string, addr netip.Addr, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if a.cfg.LoopbackSuperuser && addr.IsValid() && addr.Unmap().IsLoopback() {
		return true
	}
	if user != "" && a.super[user] {
		return true
	}
	builtin := false
	switch {
	case rt == kmsg.ACLResourceTypeGroup && a.cfg.GroupPrefixUser && user != "":
		if !ownsGroup(user, name) {
			return false // a user's groups must start with its name
		}
		builtin = op == kmsg.ACLOperationRead || op == kmsg.ACLOperationDescribe || op == kmsg.ACLOperationDelete
	case rt == kmsg.ACLResourceTypeTopic && (op == kmsg.ACLOperationRead || op == kmsg.ACLOperationDescribe):
		builtin = globMatch(a.cfg.PublicTopics, name)
	case rt == kmsg.ACLResourceTypeGroup && user == "" && (op == kmsg.ACLOperationRead || op == kmsg.ACLOperationDescribe):
		builtin = globMatch(a.cfg.PublicGroups, name)
	}

	principals := []string{"User:*", "User:ANONYMOUS"}
	if user != "" {
		principals[1] = "User:" + user
		for _, g := range a.member[user] {
			principals = append(principals, "Group:"+g)
		}
	}
	allowed := builtin
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, r := range a.acls {
		if r.ResourceType != rt || !r.matchesResource(name) || !r.matchesHost(addr) || !hasString(principals, r.Principal) {
			continue
		}
		if r.Permission == kmsg.ACLPermissionTypeDeny && (r.Operation == op || r.Operation == kmsg.ACLOperationAll) {
			return false // deny wins
		}
		if r.Permission == kmsg.ACLPermissionTypeAllow && implies(r.Operation, op) {
			allowed = true
		}
	}
	return allowed
}

func (r ACL) matchesResource(name string) bool {
	if r.Pattern == kmsg.ACLResourcePatternTypePrefixed {
		return strings.HasPrefix(name, r.Resource)
	}
	return r.Resource == "*" || r.Resource == name
}

func (r ACL) matchesHost(addr netip.Addr) bool {
	if r.Host == "*" {
		return true
	}
	h, err := netip.ParseAddr(r.Host)
	return err == nil && addr.IsValid() && h.Unmap() == addr.Unmap()
}

// implies tells whether an ALLOW of granted allows op: ALL allows
// everything, and as in Kafka READ, WRITE, DELETE and ALTER imply DESCRIBE,
// ALTER_CONFIGS implies DESCRIBE_CONFIGS.
func implies(granted, op kmsg.ACLOperation) bool {
	switch {
	case granted == op || granted == kmsg.ACLOperationAll:
		return true
	case op == kmsg.ACLOperationDescribe:
		return granted == kmsg.ACLOperationRead || granted == kmsg.ACLOperationWrite ||
			granted == kmsg.ACLOperationDelete || granted == kmsg.ACLOperationAlter
	case op == kmsg.ACLOperationDescribeConfigs:
		return granted == kmsg.ACLOperationAlterConfigs
	}
	return false
}

func globMatch(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

func hasString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// aclFilter is a DescribeAcls or DeleteAcls filter, Kafka's matching
// rules: ANY matches every value, a nil string every string; MATCH as a
// pattern type matches the rules that apply to the named resource (literal,
// * and prefixed).
type aclFilter struct {
	rt              kmsg.ACLResourceType
	name            *string
	pattern         kmsg.ACLResourcePatternType
	principal, host *string
	op              kmsg.ACLOperation
	perm            kmsg.ACLPermissionType
}

func (f aclFilter) match(r ACL) bool {
	if f.rt != kmsg.ACLResourceTypeAny && f.rt != r.ResourceType {
		return false
	}
	switch f.pattern {
	case kmsg.ACLResourcePatternTypeAny:
		if f.name != nil && *f.name != r.Resource {
			return false
		}
	case kmsg.ACLResourcePatternTypeMatch:
		if f.name != nil && !r.matchesResource(*f.name) {
			return false
		}
	default:
		if f.pattern != r.Pattern || (f.name != nil && *f.name != r.Resource) {
			return false
		}
	}
	return (f.principal == nil || *f.principal == r.Principal) &&
		(f.host == nil || *f.host == r.Host) &&
		(f.op == kmsg.ACLOperationAny || f.op == r.Operation) &&
		(f.perm == kmsg.ACLPermissionTypeAny || f.perm == r.Permission)
}

// v0 requests know only literal patterns.
func patternOf(version int16, p kmsg.ACLResourcePatternType) kmsg.ACLResourcePatternType {
	if version == 0 {
		return kmsg.ACLResourcePatternTypeLiteral
	}
	return p
}

// CreateACLs implements protocol.ACLAdmin.
func (a *Authorizer) CreateACLs(_ context.Context, req *kmsg.CreateACLsRequest) *kmsg.CreateACLsResponse {
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	for _, c := range req.Creations {
		res := kmsg.NewCreateACLsResponseResult()
		r := ACL{ResourceType: c.ResourceType, Pattern: patternOf(req.Version, c.ResourcePatternType), Resource: c.ResourceName,
			Principal: c.Principal, Host: c.Host, Operation: c.Operation, Permission: c.PermissionType}
		if err := a.AddACL(r); err != nil {
			res.ErrorCode = kerr.InvalidRequest.Code
			res.ErrorMessage = kmsg.StringPtr(err.Error())
		}
		resp.Results = append(resp.Results, res)
	}
	return resp
}

// DescribeACLs implements protocol.ACLAdmin.
func (a *Authorizer) DescribeACLs(_ context.Context, req *kmsg.DescribeACLsRequest) *kmsg.DescribeACLsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	f := aclFilter{rt: req.ResourceType, name: req.ResourceName, pattern: patternOf(req.Version, req.ResourcePatternType),
		principal: req.Principal, host: req.Host, op: req.Operation, perm: req.PermissionType}
	resp.Resources = describedResources(filterACLs(a.ACLs(), f.match))
	return resp
}

// DeleteACLs implements protocol.ACLAdmin.
func (a *Authorizer) DeleteACLs(_ context.Context, req *kmsg.DeleteACLsRequest) *kmsg.DeleteACLsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	for _, rf := range req.Filters {
		f := aclFilter{rt: rf.ResourceType, name: rf.ResourceName, pattern: patternOf(req.Version, rf.ResourcePatternType),
			principal: rf.Principal, host: rf.Host, op: rf.Operation, perm: rf.PermissionType}
		res := kmsg.NewDeleteACLsResponseResult()
		gone, err := a.RemoveACLs(f.match)
		if err != nil {
			res.ErrorCode = kerr.UnknownServerError.Code
			res.ErrorMessage = kmsg.StringPtr(err.Error())
		}
		for _, r := range gone {
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, m.ResourceName, m.ResourcePatternType = r.ResourceType, r.Resource, r.Pattern
			m.Principal, m.Host, m.Operation, m.PermissionType = r.Principal, r.Host, r.Operation, r.Permission
			res.MatchingACLs = append(res.MatchingACLs, m)
		}
		resp.Results = append(resp.Results, res)
	}
	return resp
}

func filterACLs(acls []ACL, keep func(ACL) bool) []ACL {
	var out []ACL
	for _, r := range acls {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// describedResources groups rules by resource, sorted, as DescribeAcls
// answers them.
func describedResources(acls []ACL) []kmsg.DescribeACLsResponseResource {
	type res struct {
		rt kmsg.ACLResourceType
		p  kmsg.ACLResourcePatternType
		n  string
	}
	by := map[res][]ACL{}
	var order []res
	for _, r := range acls {
		k := res{r.ResourceType, r.Pattern, r.Resource}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], r)
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if a.rt != b.rt {
			return a.rt < b.rt
		}
		if a.n != b.n {
			return a.n < b.n
		}
		return a.p < b.p
	})
	var out []kmsg.DescribeACLsResponseResource
	for _, k := range order {
		dr := kmsg.NewDescribeACLsResponseResource()
		dr.ResourceType, dr.ResourceName, dr.ResourcePatternType = k.rt, k.n, k.p
		for _, r := range by[k] {
			ra := kmsg.NewDescribeACLsResponseResourceACL()
			ra.Principal, ra.Host, ra.Operation, ra.PermissionType = r.Principal, r.Host, r.Operation, r.Permission
			dr.ACLs = append(dr.ACLs, ra)
		}
		out = append(out, dr)
	}
	return out
}

// ownsGroup tells whether group name is user's under authz.group.prefix.user:
// the user name alone or followed by a separator, so that user "al" does not
// own "alice-night".
func ownsGroup(user, name string) bool {
	if name == user {
		return true
	}
	rest, ok := strings.CutPrefix(name, user)
	return ok && rest != "" && strings.ContainsRune("-_.", rune(rest[0]))
}
