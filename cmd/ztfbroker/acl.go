package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// runACL is `ztfbroker acl add|remove|list`: Kafka's CreateAcls,
// DeleteAcls and DescribeAcls sent to a running broker, so it works while
// serve runs (the rules live in the broker's pebble store, which only one
// process may open). From the broker's machine it is allowed by
// authz.loopback.superuser; elsewhere the principal needs ALTER (add,
// remove) or DESCRIBE (list) on the cluster.
func runACL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "remove" && args[0] != "list") {
		fmt.Fprintln(stderr, "usage: ztfbroker acl add|remove|list [flags]")
		return errors.New("acl: want add, remove or list")
	}
	verb := args[0]
	fs := flag.NewFlagSet("acl "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	bootstrap := fs.String("bootstrap", "127.0.0.1:9092", "the running broker's Kafka listener")
	principal := fs.String("principal", "", "User:<name>, User:* (anyone) or Group:<name> (authz.groups); list/remove: empty matches any")
	host := fs.String("host", "*", "the client IP the rule applies to; list/remove: empty matches any")
	operation := fs.String("operation", "", "READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE or ALL; list/remove: empty matches any")
	topic := fs.String("topic", "", "the topic (or prefix, with --prefixed); * for every topic")
	group := fs.String("group", "", "the consumer group (or prefix, with --prefixed)")
	cluster := fs.Bool("cluster", false, "the cluster itself (creating topics, the ACL calls, ...)")
	prefixed := fs.Bool("prefixed", false, "the name is a prefix (Kafka's PREFIXED pattern)")
	deny := fs.Bool("deny", false, "a DENY rule (deny wins over allow)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the broker")
	var login brokerLogin
	login.flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	loginOpts, err := login.opts()
	if err != nil {
		return fmt.Errorf("acl: %w", err)
	}

	rt, name := kmsg.ACLResourceTypeAny, (*string)(nil)
	switch {
	case *topic != "" && *group == "" && !*cluster:
		rt, name = kmsg.ACLResourceTypeTopic, topic
	case *group != "" && *topic == "" && !*cluster:
		rt, name = kmsg.ACLResourceTypeGroup, group
	case *cluster && *topic == "" && *group == "":
		rt, name = kmsg.ACLResourceTypeCluster, kmsg.StringPtr("kafka-cluster")
	case *topic != "" || *group != "" || *cluster:
		return errors.New("acl: one of --topic, --group or --cluster")
	case verb == "add":
		return errors.New("acl add: name the resource: --topic, --group or --cluster")
	}
	pattern := kmsg.ACLResourcePatternTypeLiteral
	if *prefixed {
		pattern = kmsg.ACLResourcePatternTypePrefixed
	} else if verb != "add" && name == nil {
		pattern = kmsg.ACLResourcePatternTypeAny
	}
	op := kmsg.ACLOperationAny
	if *operation != "" {
		var err error
		if op, err = kmsg.ParseACLOperation(strings.ToLower(strings.ReplaceAll(*operation, "_", ""))); err != nil {
			return fmt.Errorf("acl: --operation %q: %w", *operation, err)
		}
	}
	perm := kmsg.ACLPermissionTypeAllow
	if *deny {
		perm = kmsg.ACLPermissionTypeDeny
	} else if verb != "add" && !isFlagSet(fs, "deny") {
		perm = kmsg.ACLPermissionTypeAny
	}
	optional := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	if verb == "add" && (*principal == "" || op == kmsg.ACLOperationAny) {
		return errors.New("acl add: --principal and --operation are required")
	}

	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(*bootstrap)}, loginOpts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	switch verb {
	case "add":
		req := kmsg.NewPtrCreateACLsRequest()
		c := kmsg.NewCreateACLsRequestCreation()
		c.ResourceType, c.ResourceName, c.ResourcePatternType = rt, *name, pattern
		c.Principal, c.Host, c.Operation, c.PermissionType = *principal, *host, op, perm
		req.Creations = append(req.Creations, c)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return fmt.Errorf("acl add: %w", err)
		}
		for _, r := range resp.Results {
			if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
				return fmt.Errorf("acl add: %w%s", err, message(r.ErrorMessage))
			}
		}
		fmt.Fprintf(stdout, "added: %s %s %s %s %s for %s from %s\n", perm, op, rt, pattern, *name, *principal, *host)
	case "remove":
		req := kmsg.NewPtrDeleteACLsRequest()
		f := kmsg.NewDeleteACLsRequestFilter()
		f.ResourceType, f.ResourceName, f.ResourcePatternType = rt, name, pattern
		f.Principal, f.Host, f.Operation, f.PermissionType = optional(*principal), optional(*host), op, perm
		req.Filters = append(req.Filters, f)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return fmt.Errorf("acl remove: %w", err)
		}
		n := 0
		for _, r := range resp.Results {
			if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
				return fmt.Errorf("acl remove: %w%s", err, message(r.ErrorMessage))
			}
			n += len(r.MatchingACLs)
		}
		fmt.Fprintf(stdout, "removed %d rule(s)\n", n)
	case "list":
		req := kmsg.NewPtrDescribeACLsRequest()
		req.ResourceType, req.ResourceName, req.ResourcePatternType = rt, name, pattern
		req.Principal, req.Host, req.Operation, req.PermissionType = optional(*principal), optional(*host), op, perm
		if req.ResourcePatternType == kmsg.ACLResourcePatternTypeLiteral && !*prefixed && name != nil {
			req.ResourcePatternType = kmsg.ACLResourcePatternTypeMatch // every rule that applies to the name
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return fmt.Errorf("acl list: %w", err)
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return fmt.Errorf("acl list: %w%s", err, message(resp.ErrorMessage))
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "PERMISSION\tOPERATION\tRESOURCE\tPATTERN\tNAME\tPRINCIPAL\tHOST")
		for _, r := range resp.Resources {
			for _, a := range r.ACLs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.PermissionType, a.Operation, r.ResourceType, r.ResourcePatternType, r.ResourceName, a.Principal, a.Host)
			}
		}
		return w.Flush()
	}
	return nil
}

func message(m *string) string {
	if m == nil || *m == "" {
		return ""
	}
	return ": " + *m
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
