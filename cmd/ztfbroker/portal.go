package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/alertindex"
	"github.com/ztfbroker/ztfbroker/archive"
	"github.com/ztfbroker/ztfbroker/portal"
	"github.com/ztfbroker/ztfbroker/web"
)

// portalUser is the in-process alert index's Kafka user inside serve.
const portalUser = "ztfbroker-portal"

// newPortal opens the alert index, builds its follower and the portal,
// and serves the portal's pages on site ("/" included). run follows the
// alert topics until its context ends; closeAll closes the client and the
// index.
func newPortal(cfg portalSection, bootstrap []string, login []kgo.Opt, tap *alertindex.Tap, site *web.Server,
	mayRead func(*http.Request, string) bool, archiveDir string, logger *zap.Logger, reg prometheus.Registerer) (run func(context.Context) error, closeAll func(), err error) {
	ic := cfg.IndexConfig
	ic.Bootstrap = bootstrap
	ic.ClientOpts = append(ic.ClientOpts, login...)
	idx, err := alertindex.Open(ic.Dir, ic.CacheBytes, logger.Named("portal"))
	if err != nil {
		return nil, nil, err
	}
	f, err := alertindex.NewFollower(ic, idx, logger.Named("portal"), reg)
	if err != nil {
		idx.Close()
		return nil, nil, err
	}
	if tap != nil {
		f.UseTap(tap)
	}
	closeAll = func() {
		f.Close()
		if err := idx.Close(); err != nil {
			logger.Warn("close the alert index", zap.Error(err))
		}
	}
	p, err := portal.New(cfg.WebConfig, portal.Deps{
		Index:    idx,
		Read:     f.ReadAlert,
		Progress: f.Progress, Admin: f.Admin(), MayRead: mayRead, Logger: logger.Named("portal"),
		Links: []portal.Link{{Title: "Nightly archive, public", Path: "/alerts/public/"},
			{Title: "Nightly archive, partnership", Path: "/alerts/partnership/"},
			{Title: "Metrics", Path: "/metrics"}, {Title: "Every page and API", Path: "/pages"}},
		Nights: archiveNights(archiveDir),
	})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	routes := webRoutes(p.Routes())
	for i := range routes {
		// Anyone may ask; what each user sees is decided per alert.
		routes[i].Access = web.Anyone
	}
	if err := site.Handle(routes...); err != nil {
		closeAll()
		return nil, nil, err
	}
	site.SetHome(p.Home(), web.Anyone)
	run = func(ctx context.Context) error {
		err := f.Run(ctx)
		f.Close() // leave the group while the listeners are up
		return err
	}
	return run, closeAll, nil
}

// runPortal is `ztfbroker portal`: the alert index and portal as a client
// of any Kafka cluster, with a web server of its own.
func runPortal(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("portal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bootstrap := fs.String("bootstrap", "", "Kafka HOST:PORT[,HOST:PORT...] holding the alert topics (required)")
	dir := fs.String("index", "./data/portal", "folder of the alert index (pebble)")
	httpAddr := fs.String("http", "0.0.0.0:8080", "HTTP listener HOST:PORT for the portal and /metrics")
	group := fs.String("group", alertindex.DefaultConfig().Group, "consumer group whose committed offsets the index resumes from")
	topics := fs.String("topics", alertindex.DefaultConfig().Topics, "regular expression of the alert topics")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ztfbroker portal --bootstrap HOST:PORT [--index DIR] [--http HOST:PORT] [--group NAME] [--topics REGEXP]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bootstrap == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("--bootstrap is required, and nothing else")
	}
	cfg := portalSection{Enabled: true, IndexConfig: alertindex.DefaultConfig(), WebConfig: portal.DefaultConfig()}
	cfg.Dir, cfg.Group, cfg.Topics = *dir, *group, *topics
	logger, err := (serveConfig{processSection: processSection{LogLevel: "info", LogFormat: "json"}}).logger(stderr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	wc := web.DefaultConfig()
	wc.Addr, wc.AdminAddr = *httpAddr, ""
	site, err := web.New(wc, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), logger.Named("http"))
	if err != nil {
		return err
	}
	// Without the broker's users and ACLs, only public alerts are shown.
	// Against another cluster there is no broker in the process to tap.
	run, closeAll, err := newPortal(cfg, strings.Split(*bootstrap, ","), nil, nil, site, nil, "", logger, reg)
	if err != nil {
		return err
	}
	defer closeAll()
	if err := site.Listen(); err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- site.Serve() }()
	logger.Info("portal started", zap.String("http", site.Addr().String()), zap.String("bootstrap", *bootstrap),
		zap.String("index", cfg.Dir))
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { errc <- run(runCtx) }()
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	stop()
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	site.Shutdown(shut)
	if runErr != nil && !errors.Is(runErr, http.ErrServerClosed) {
		return runErr
	}
	return nil
}

// runReindex is `ztfbroker reindex`: the alert index made anew from the log.
func runReindex(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reindex", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bootstrap := fs.String("bootstrap", "", "Kafka HOST:PORT[,HOST:PORT...] holding the alert topics (required)")
	dataDir := fs.String("data-dir", "./data", "serve's data directory: the index is DIR/portal")
	dir := fs.String("index", "", "folder of the alert index (default: DATA-DIR/portal)")
	group := fs.String("group", alertindex.DefaultConfig().Group, "the portal's consumer group, whose offsets are set to where the rebuild ends")
	topics := fs.String("topics", alertindex.DefaultConfig().Topics, "regular expression of the alert topics")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ztfbroker reindex --bootstrap HOST:PORT [--data-dir DIR | --index DIR] [--group NAME] [--topics REGEXP]\n\n"+
			"Rebuilds the alert index from the log. Run it with the portal stopped (serve with --set portal.enabled=false).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bootstrap == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("--bootstrap is required, and nothing else")
	}
	cfg := alertindex.DefaultConfig()
	cfg.Bootstrap, cfg.Group, cfg.Topics, cfg.Dir = strings.Split(*bootstrap, ","), *group, *topics, *dir
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(*dataDir, "portal")
	}
	start := time.Now()
	rep, err := alertindex.Rebuild(ctx, cfg, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "reindexed %d alerts of %d topics in %s (%d did not decode); index %s, digest %s\n",
		rep.Alerts, rep.Topics, time.Since(start).Round(time.Millisecond), rep.Undecodable, cfg.Dir, rep.Digest)
	return nil
}

// archiveNights lists the public nights archived in dir ("": none).
func archiveNights(dir string) func() ([]portal.ArchiveNight, error) {
	if dir == "" {
		return nil
	}
	return func() ([]portal.ArchiveNight, error) {
		es, err := archive.List(dir, archive.Public)
		out := make([]portal.ArchiveNight, 0, len(es))
		for _, e := range es {
			out = append(out, portal.ArchiveNight{Night: e.Night, Name: e.Name, Size: e.Size, URL: e.URL})
		}
		return out, err
	}
}
