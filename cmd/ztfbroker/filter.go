package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/filter"
	"github.com/ztfbroker/ztfbroker/web"
)

// runFilter is `ztfbroker filter add|remove|list|test|run`; test runs an
// expression over alert files, or over the last --since of --topics on
// --bootstrap, and prints the matches it would have had. Filters are
// records of a topic (filter.spec.topic) on the cluster they run against,
// so add, remove and list work against a running serve (or any Kafka
// cluster) over the Kafka protocol: from the broker's machine as the
// loopback super user, elsewhere logged in as a user with WRITE on that
// topic. Every expression is compiled and type-checked before it is
// stored.
func runFilter(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "remove" && args[0] != "list" && args[0] != "test" && args[0] != "run") {
		fmt.Fprintln(stderr, "usage: ztfbroker filter add|remove|list|test|run [flags] [NAME | FILE...]")
		return errors.New("filter: want add, remove, list, test or run")
	}
	verb := args[0]
	fs := flag.NewFlagSet("filter "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	bootstrap := fs.String("bootstrap", "127.0.0.1:9092", "the Kafka cluster (a running serve, or any)")
	specTopic := fs.String("spec-topic", filter.DefaultSpecTopic, "the topic holding the filters (filter.spec.topic)")
	topics := fs.String("topics", "ztf_*_programid1", "add, test: glob of the source topics")
	since := fs.Duration("since", time.Hour, "test without files: the alerts of --topics sent this long ago and since")
	expr := fs.String("expr", "", "add, test: the CEL expression (README: Filters)")
	exprFile := fs.String("expr-file", "", "add, test: read the expression from this file")
	owner := fs.String("owner", "", "add: the user the filter reads as (default: --user, or ANONYMOUS: public topics only)")
	format := fs.String("format", filter.FormatAlert, "add: alert (the alerts as received) or summary (small JSON records)")
	start := fs.String("start", filter.StartNow, "add: now (the alerts from now on) or earliest (also every retained alert: a backfill)")
	group := fs.String("group", filter.DefaultConfig().Group, "run: the runners' consumer group")
	instance := fs.String("instance-id", "", "run: a static member id of the group, unique per runner (restarts take their place at once)")
	timeout := fs.Duration("timeout", 30*time.Second, "add, remove, list: how long to wait for the cluster")
	var login brokerLogin
	login.flags(fs)
	// Flags may come before or after the name and files.
	var positional []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional, rest = append(positional, fs.Arg(0)), fs.Args()[1:]
	}
	if *exprFile != "" {
		b, err := os.ReadFile(*exprFile)
		if err != nil {
			return err
		}
		*expr = string(b)
	}
	loginOpts, err := login.opts()
	if err != nil {
		return fmt.Errorf("filter: %w", err)
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(strings.Split(*bootstrap, ",")...)}, loginOpts...)
	compiler, err := filter.NewCompiler(0)
	if err != nil {
		return err
	}
	switch verb {
	case "test":
		if len(positional) > 0 {
			return testFilter(compiler, *expr, positional, stdout)
		}
		e, err := compiler.Compile(*expr)
		if err != nil {
			return err
		}
		start := time.Now()
		res, err := filter.Preview(ctx, filter.PreviewQuery{Expr: e, Topics: *topics, Since: start.Add(-*since)}, func(r *kgo.Record, a *filter.Alert) {
			fmt.Fprintf(stdout, "match\t%s\t%d\t%s/%d/%d\n", a.ObjectID, a.Candid, r.Topic, r.Partition, r.Offset)
		}, opts...)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d of %d alerts of %s in the last %s match (%.1f%%); %d errors; %d records not read as alerts; %.0f alerts/s\n",
			res.Matches, res.Alerts, *topics, *since, 100*float64(res.Matches)/float64(max(res.Alerts, 1)), res.Errors, res.Unread,
			float64(res.Alerts)/time.Since(start).Seconds())
		return nil
	case "run":
		if _, set := os.LookupEnv("GOGC"); !set {
			// An alert is garbage once evaluated and the runner holds
			// little else: collecting less often saves a fifth of its CPU.
			debug.SetGCPercent(400)
		}
		cfg := filter.DefaultConfig()
		cfg.Bootstrap, cfg.Group, cfg.SpecTopic, cfg.InstanceID = strings.Split(*bootstrap, ","), *group, *specTopic, *instance
		logger := zap.NewExample()
		r, err := filter.NewRunner(cfg, filter.Access{}, logger, prometheus.NewRegistry(), loginOpts...)
		if err != nil {
			return err
		}
		return r.Run(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if verb == "list" {
		specs, err := filter.List(ctx, *specTopic, opts...)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tOWNER\tTOPICS\tFORMAT\tSTATE\tEXPRESSION")
		for _, s := range specs {
			state := "running"
			switch {
			case s.Paused:
				state = "paused: " + s.Reason
			case len(s.BackfillUntil) > 0 && !s.Backfilled:
				state = "backfilling"
			}
			f := s.Format
			if f == "" {
				f = filter.FormatAlert
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Owner, s.Topics, f, state, strings.Join(strings.Fields(s.Expression), " "))
		}
		return w.Flush()
	}
	if len(positional) != 1 {
		return fmt.Errorf("filter %s: want one filter name", verb)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if verb == "remove" {
		return filter.Remove(ctx, cl, *specTopic, positional[0])
	}
	if *owner == "" {
		*owner = login.user
	}
	if *owner == "" {
		*owner = "ANONYMOUS"
	}
	spec := filter.Spec{Name: positional[0], Owner: *owner, Topics: *topics, Expression: *expr, Format: *format, Start: *start}
	if err := filter.Save(ctx, cl, *specTopic, compiler, spec); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "filter %s saved: its matches go to %s\n", spec.Name, spec.Topic())
	return nil
}

// testFilter runs an expression over alert files (and folders of them)
// and prints each match and the rate.
func testFilter(c *filter.Compiler, text string, paths []string, stdout io.Writer) error {
	e, err := c.Compile(text)
	if err != nil {
		return err
	}
	d := filter.NewDecoder()
	var alerts, matches, unread int
	start := time.Now()
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() || !strings.HasSuffix(p, ".avro") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			var a filter.Alert
			if err := d.Decode(b, filter.Parts{History: e.History, Forced: e.Forced, Cutouts: e.Cutouts}, &a); err != nil {
				unread++
				return nil
			}
			alerts++
			ok, err := e.Eval(&a)
			if err != nil {
				fmt.Fprintf(stdout, "error\t%s\t%v\n", p, err)
			} else if ok {
				matches++
				fmt.Fprintf(stdout, "match\t%s\t%d\t%s\n", a.ObjectID, a.Candid, p)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%d of %d alerts match (%.1f%%); %d files not read as alerts; %.0f alerts/s\n",
		matches, alerts, 100*float64(matches)/float64(max(alerts, 1)), unread, float64(alerts)/time.Since(start).Seconds())
	return nil
}

// newFilterRunner builds the in-process filter runner, and the filters'
// HTTP API on site: it logs in as the in-process filter user, and each
// filter sees only the topics its owner may read; a filter's topic is
// readable by its owner, and by everyone when the filter's source glob lies
// inside the public topics. It returns the runner's Run and a function
// closing the API's client.
func newFilterRunner(cfg filterSection, self []string, inProcess *inProcessCredentials, authz *broker.Authorizer,
	site *web.Server, logger *zap.Logger, reg prometheus.Registerer) (func(context.Context) error, func(), error) {
	var opts []kgo.Opt
	access := filter.Access{}
	if len(cfg.Bootstrap) == 0 {
		login, err := inProcess.login(filterUser)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, kgo.SeedBrokers(self...), login)
		access = filterAccess(authz)
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = "ztfbroker-serve"
	}
	r, err := filter.NewRunner(cfg.Config, access, logger.Named("filter"), reg, opts...)
	if err != nil {
		return nil, nil, err
	}
	api, err := filter.NewAPI(cfg.Config, web.RequestUser, opts...)
	if err != nil {
		return nil, nil, err
	}
	api.MayRead = access.MayRead
	if api.MayRead == nil {
		// Against another cluster its ACLs are not known here: a web
		// user's preview reads the public stream unless signed in.
		api.MayRead = func(user, topic string) bool { return user != "" || strings.HasSuffix(topic, "_programid1") }
	}
	routes := webRoutes(api.Routes())
	for i := range routes {
		routes[i].Access = func(_ *http.Request, user string) bool { return user != "" } // saving, removing: a user's own
		if strings.HasPrefix(routes[i].Pattern, "GET ") {
			routes[i].Access = web.Anyone
		}
	}
	if err := site.Handle(routes...); err != nil {
		api.Close()
		return nil, nil, err
	}
	return r.Run, api.Close, nil
}

// filterAccess asks the broker's ACLs: may an owner read a topic (as from
// outside: no loopback), is a glob public (anonymous may read it, taken as
// a topic name), and it grants a filter topic's readers.
func filterAccess(authz *broker.Authorizer) filter.Access {
	read := func(user, topic string) bool {
		if user == "ANONYMOUS" {
			user = ""
		}
		return authz.Authorize(context.Background(), user, netip.Addr{}, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, topic)
	}
	rule := func(topic, principal string) broker.ACL {
		return broker.ACL{ResourceType: kmsg.ACLResourceTypeTopic, Pattern: kmsg.ACLResourcePatternTypeLiteral, Resource: topic,
			Principal: principal, Host: "*", Operation: kmsg.ACLOperationRead, Permission: kmsg.ACLPermissionTypeAllow}
	}
	return filter.Access{
		MayRead: read,
		Public:  func(glob string) bool { return read("", glob) },
		Grant: func(topic, owner string, public bool) error {
			if err := authz.AddACL(rule(topic, "User:"+owner)); err != nil {
				return err
			}
			if public {
				return authz.AddACL(rule(topic, "User:*"))
			}
			everyone := rule(topic, "User:*")
			_, err := authz.RemoveACLs(func(a broker.ACL) bool { return a == everyone })
			return err
		},
	}
}
