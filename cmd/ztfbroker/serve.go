package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"regexp"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/alertindex"
	"github.com/ztfbroker/ztfbroker/archive"
	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/mirror"
	"github.com/ztfbroker/ztfbroker/packager"
	"github.com/ztfbroker/ztfbroker/protocol"
	"github.com/ztfbroker/ztfbroker/web"
)

// runServe starts the broker and everything configured beside it, and stops
// them in reverse order when ctx ends (SIGTERM or SIGINT).
func runServe(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "YAML config file (see configs/ztfbroker.yaml); flags override it")
	var flags settingFlags
	fs.Func("data-dir", "data directory (data.dir; default ./data)", flags.set("data.dir"))
	fs.Func("listen", "first Kafka listener's HOST:PORT (default 0.0.0.0:9092)", flags.set(flagListen))
	fs.Func("advertise", "HOST:PORT the first listener advertises to Kafka clients (default: its listen address)", flags.set(flagAdvertise))
	fs.Func("http", "HTTP listener HOST:PORT for /metrics, /healthz and the archive (http.listener; default 0.0.0.0:8080)", flags.set("http.listener"))
	fs.Func("admin-http", "admin HTTP listener HOST:PORT for pprof (admin.listener; default 127.0.0.1:8081; empty: none)", flags.set("admin.listener"))
	fs.Func("log-level", "debug, info, warn or error (log.level; default info)", flags.set("log.level"))
	fs.Func("packager", "run the packager, by default on a simulated night (packager.enabled; default true)", flags.set("packager.enabled"))
	fs.Func("archive", "run the nightly archive scheduler (archive.enabled; default true)", flags.set("archive.enabled"))
	recoverMeta := fs.Bool("recover-metadata", false, "if the metadata store is damaged (the start is refused, naming it), move it aside and rebuild the topics from the partition folders; consumer groups and committed offsets are lost. Does nothing to a sound store")
	fs.Func("set", "any setting of the config file as `NAME=VALUE` (repeatable), e.g. --set log.retention.ms=86400000", flags.setAny)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg, err := loadServeConfig(*configFile, flags)
	if err != nil {
		return err
	}
	logger, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	defer logger.Sync()

	// The heap's share of the memory budget; GOMEMLIMIT in the environment
	// wins over the config file.
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(cfg.Memory.GoHeap)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Start order: store, groups, Kafka listener, HTTP, then the clients
	// inside the process (packager, archive), which dial the listener like
	// any outside client. Stop order is the reverse.
	if *recoverMeta {
		if _, err := broker.RecoverMetadata(cfg.Broker, logger.Named("broker"), time.Now); err != nil {
			return fmt.Errorf("recover metadata: %w", err)
		}
	}
	b, err := broker.Open(cfg.Broker, logger.Named("broker"), reg, time.Now)
	if err != nil {
		return fmt.Errorf("open broker: %w", err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			logger.Error("close broker", zap.Error(err))
		}
	}()
	groups, err := broker.OpenGroupCoordinator(b, cfg.Groups, reg)
	if err != nil {
		return err
	}
	defer groups.Close()
	groups.SetClientInfo(protocol.ClientInfo)

	kafkaLns := make([]net.Listener, len(cfg.Listeners))
	for i, l := range cfg.Listeners {
		if kafkaLns[i], err = net.Listen("tcp", l.Listen); err != nil {
			return fmt.Errorf("listener %s: %w", l.Name, err)
		}
		defer kafkaLns[i].Close() // owned by the server once serving; closing again is harmless
	}
	// Each listener's security; certificates are read again on SIGHUP.
	lcs := make([]protocol.ListenerConfig, len(cfg.Listeners))
	var certs []*protocol.Certificate
	var namedCerts []namedCertificate // for ztfbroker_tls_certificate_expiry_timestamp_seconds
	for i, l := range cfg.Listeners {
		lc, cert, err := l.listenerConfig()
		if err != nil {
			return err
		}
		lcs[i] = lc
		if cert != nil {
			certs = append(certs, cert)
			namedCerts = append(namedCerts, namedCertificate{l.Name, cert})
		}
	}
	if cfg.Web.TLSCert != "" {
		cert, err := protocol.LoadCertificate(cfg.Web.TLSCert, cfg.Web.TLSKey)
		if err != nil {
			return fmt.Errorf("http.tls.cert: %w", err)
		}
		cfg.Web.TLS = cert.TLSConfig()
		certs = append(certs, cert)
		namedCerts = append(namedCerts, namedCertificate{"http", cert})
	}
	if len(certs) > 0 {
		stopReload := reloadOnSIGHUP(ctx, certs, logger)
		defer stopReload()
	}
	site, err := web.New(cfg.Web, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), logger.Named("http"))
	if err != nil {
		return err
	}
	// What the operator's kit needs beside the packages' metrics, and the
	// status summary built from the same registry (opsmetrics.go, status.go).
	reg.MustRegister(&opsCollector{b: b, budget: cfg.Memory.Budget, certs: namedCerts, archive: cfg.Archive, now: time.Now})
	if err := site.Handle(web.Route{Pattern: "GET /api/v1/status", Handler: statusHandler(reg, time.Now),
		Title: "Status (JSON, as ztfbroker status prints it)", Access: web.OnlyUsers(cfg.Web.MetricsUsers)}); err != nil {
		return err
	}
	if err := site.Listen(); err != nil {
		return fmt.Errorf("http: %w", err)
	}
	defer site.Close() // stops nothing once shut down; frees the ports on an early return
	// Clients inside the process (packager, archive) log in over a
	// loopback listener of their own (inprocess.go).
	selfLn, selfLC, err := inProcessListen()
	if err != nil {
		return err
	}
	defer selfLn.Close()
	kafkaLns, lcs = append(kafkaLns, selfLn), append(lcs, selfLC)
	self := []string{selfLn.Addr().String()}

	srv, err := protocol.NewServer(cfg.Listener, b, groups, logger.Named("kafka"), reg)
	if err != nil {
		return err
	}
	inProcess := newInProcessCredentials(b)
	srv.SetCredentials(inProcess)
	cfg.Authz.SuperUsers = append(cfg.Authz.SuperUsers, inProcessUsers...)
	authz, err := broker.OpenAuthorizer(b.Meta(), cfg.Authz)
	if err != nil {
		return fmt.Errorf("acls: %w", err)
	}
	srv.SetAuthorizer(authz)
	// The web pages answer to the Kafka users and ACLs: a user's basic
	// credentials are checked against the same SCRAM store, and the
	// partnership archive needs READ on the partnership's topics.
	site.SetPasswordCheck(func(user, password string) error { return protocol.CheckPassword(b, user, password) })
	archiveRoutes := webRoutes(archive.Routes(cfg.Archive.Dir, logger.Named("archive")))
	for i := range archiveRoutes {
		archiveRoutes[i].Access = archiveAccess(authz, time.Now)
	}
	if err := site.Handle(archiveRoutes...); err != nil {
		return err
	}

	// The clients inside the process are built before anything is served,
	// so that a failure here leaves nothing to stop; they dial when run.
	var clients []func(context.Context) error
	if cfg.Packager.Enabled {
		var login []kgo.Opt
		if len(cfg.Packager.Bootstrap) == 0 {
			opt, err := inProcess.login(packagerUser)
			if err != nil {
				return err
			}
			login = append(login, opt)
		}
		run, closeProducer, err := newPackager(cfg.Packager, self, login, site, logger, reg)
		if err != nil {
			return err
		}
		defer closeProducer()
		clients = append(clients, run)
	}
	if cfg.Archive.Enabled {
		var login []kgo.Opt
		if len(cfg.Archive.Bootstrap) == 0 {
			cfg.Archive.Bootstrap = self
			opt, err := inProcess.login(archiverUser)
			if err != nil {
				return err
			}
			login = append(login, opt)
		}
		// Confluent-framed nights are archived with the packager's schema.
		cfg.Archive.Schemas = packagerSchemas(cfg.Packager.SchemaID)
		sched, err := archive.NewScheduler(cfg.Archive, logger.Named("archive"), reg, time.Now)
		if err != nil {
			return err
		}
		sched.ClientOpts = append(sched.ClientOpts, login...)
		clients = append(clients, sched.Run)
	}
	if cfg.Filter.Enabled {
		run, closeAPI, err := newFilterRunner(cfg.Filter, self, inProcess, authz, site, logger, reg)
		if err != nil {
			return err
		}
		defer closeAPI()
		clients = append(clients, run)
	}
	if cfg.Portal.Enabled {
		login, err := inProcess.login(portalUser)
		if err != nil {
			return err
		}
		// The broker hands the index the alerts it appends, so that it
		// need not fetch and decompress them again (alertindex.Tap).
		var tap *alertindex.Tap
		if cfg.Portal.TapBytes > 0 {
			if tap, err = alertindex.NewTap(cfg.Portal.IndexConfig); err != nil {
				return err
			}
		}
		run, closePortal, err := newPortal(cfg.Portal, self, []kgo.Opt{login}, tap, site, portalAccess(authz), cfg.Archive.Dir, logger, reg)
		if err != nil {
			return err
		}
		defer closePortal()
		if tap != nil {
			b.SetTap(tap)
			defer b.SetTap(nil)
		}
		clients = append(clients, run)
	}

	if cfg.Mirror.Enabled {
		opt, err := inProcess.login(mirrorUser)
		if err != nil {
			return err
		}
		cfg.Mirror.Dest, cfg.Mirror.DestKafkaOpts = self, []kgo.Opt{opt}
		mr, err := mirror.New(cfg.Mirror.Config, logger.Named("mirror"), reg, time.Now)
		if err != nil {
			return err
		}
		clients = append(clients, mr.Run)
	}

	errc := make(chan error, 1+len(kafkaLns))
	kafkaAddrs := make([]string, len(kafkaLns))
	for i, ln := range kafkaLns {
		// An empty advertise: the listener's own address, an unspecified
		// host replaced by this machine's first non-loopback IPv4, as
		// remote consumers need.
		lc := lcs[i]
		go func() { errc <- srv.ServeListener(ln, lc) }()
		kafkaAddrs[i] = lc.Name + "://" + ln.Addr().String()
	}
	go func() { errc <- site.Serve() }()
	admin := "none"
	if a := site.AdminAddr(); a != nil {
		admin = a.String()
	}
	logger.Info("ztfbroker started", append([]zap.Field{
		zap.Strings("kafka", kafkaAddrs),
		zap.String("http", site.Addr().String()), zap.String("admin_http", admin),
		zap.String("data_dir", cfg.Broker.DataDir)}, cfg.Memory.fields()...)...)

	clientCtx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	var running sync.WaitGroup
	for _, run := range clients {
		running.Add(1)
		go func() {
			defer running.Done()
			if err := run(clientCtx); err != nil {
				logger.Error("in-process client stopped", zap.Error(err))
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("stopping: draining connections")
	case runErr = <-errc:
		logger.Error("listener failed", zap.Error(runErr))
	}
	stopClients()
	running.Wait()
	stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := site.Shutdown(stopCtx); err != nil {
		logger.Warn("http shutdown", zap.Error(err))
	}
	if err := srv.Shutdown(stopCtx); err != nil {
		logger.Warn("kafka listener shutdown", zap.Error(err))
	}
	if runErr != nil && !errors.Is(runErr, http.ErrServerClosed) && !errors.Is(runErr, protocol.ErrServerClosed) {
		return runErr
	}
	logger.Info("stopped")
	return nil
}

// newPackager builds the packager on its configured source, producing to
// this broker (or the section's bootstrap), and serves its schema registry
// endpoint. It returns the packager's Run and a function closing its producer.
func newPackager(cfg packagerSection, self []string, login []kgo.Opt, site *web.Server, logger *zap.Logger,
	reg prometheus.Registerer) (run func(context.Context) error, closeProducer func(), err error) {
	bootstrap := cfg.Bootstrap
	if len(bootstrap) == 0 {
		bootstrap = self
	}
	prod, err := packager.NewKafkaProducer(packager.KafkaOptions{Bootstrap: bootstrap,
		Compression: cfg.Compression, CompressionLevel: cfg.CompressionLevel}, login...)
	if err != nil {
		return nil, nil, fmt.Errorf("packager producer: %w", err)
	}
	p, err := packager.New(cfg.Config, prod, logger.Named("packager"), reg)
	if err != nil {
		prod.Close()
		return nil, nil, err
	}
	if err := site.Handle(webRoutes(p.SchemaRoutes())...); err != nil {
		p.Close()
		prod.Close()
		return nil, nil, err
	}
	if cfg.Source.Kind == "simulate" {
		logger.Info("packager simulating a night: alerts are synthetic; set packager.source.kind to ingest for a survey's detections",
			zap.Int("alerts_per_exposure", cfg.Source.Simulate.Alerts), zap.Duration("interval", cfg.Source.Simulate.Interval))
	}
	return p.Run, func() {
		p.Close()
		prod.Close()
	}, nil
}

// webRoutes converts an owner's routes (archive.Route, packager.Route: the
// fields of web.Route, since owners do not import web) for the web server.
func webRoutes[R ~struct {
	Pattern string
	Handler http.Handler
	Title   string
}](rs []R) []web.Route {
	out := make([]web.Route, len(rs))
	for i, r := range rs {
		x := struct {
			Pattern string
			Handler http.Handler
			Title   string
		}(r)
		out[i] = web.Route{Pattern: x.Pattern, Handler: x.Handler, Title: x.Title}
	}
	return out
}

// archiveAccess lets anyone read the public archive and a user read a
// program's archive when the ACLs let them READ that program's nightly
// topics: the night in the file name (ztf_partnership_YYYYMMDD.tar.gz), or
// tonight for a listing. Anonymous web requests are judged as anonymous
// Kafka clients from outside (no loopback superuser: a web proxy on the
// broker's own machine would otherwise open everything).
func archiveAccess(authz protocol.Authorizer, now func() time.Time) web.Access {
	return func(r *http.Request, user string) bool {
		program, ok := archive.ParseProgram(r.PathValue("program"))
		if !ok || program == archive.Public {
			return true // an unknown program answers 404 by itself
		}
		night := now().UTC().Format("20060102")
		if m := archiveNight.FindStringSubmatch(r.PathValue("name")); m != nil {
			night = m[1]
		}
		topic := fmt.Sprintf("ztf_%s_programid%d", night, int(program))
		return authz.Authorize(r.Context(), user, netip.Addr{}, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, topic)
	}
}

// portalAccess lets a web user see the portal's alerts of a topic the ACLs
// let them READ, judged as archiveAccess judges the archive.
func portalAccess(authz protocol.Authorizer) func(*http.Request, string) bool {
	return func(r *http.Request, topic string) bool {
		return authz.Authorize(r.Context(), web.RequestUser(r), netip.Addr{}, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, topic)
	}
}

// archiveNight finds the night in an archive's file name.
var archiveNight = regexp.MustCompile(`_(\d{8})\.tar\.gz`)

// loopback is the listener's address with an unspecified host (0.0.0.0,
// ::) replaced by 127.0.0.1, for clients inside this process.
func loopback(ln net.Addr) string {
	host, port, _ := net.SplitHostPort(ln.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// reloadOnSIGHUP reads the listeners' certificates again on every SIGHUP:
// connections keep the certificate they shook hands with, new ones get the
// new one. A file that fails to load keeps the old certificate.
func reloadOnSIGHUP(ctx context.Context, certs []*protocol.Certificate, logger *zap.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
			case <-ctx.Done():
				return
			case <-done:
				return
			}
			for _, c := range certs {
				if err := c.Reload(); err != nil {
					logger.Error("SIGHUP: certificate not reloaded; keeping the old one", zap.Error(err))
				}
			}
			logger.Info("SIGHUP: TLS certificates reloaded", zap.Int("certificates", len(certs)))
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}
