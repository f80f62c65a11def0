// Command ztfbroker is a single-binary alert-distribution system: a Kafka-wire
// broker on its own log store, the ZTF alert packager, the nightly archive and
// the tools around them. Each subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand: its run function and a line of help.
type command struct {
	run  func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
	help string
}

func commands() map[string]command {
	return map[string]command{
		"serve":   {runServe, "run the broker (Kafka listener, HTTP, packager and archive as configured)"},
		"verify":  {runVerify, "check every record batch of every segment under a data directory"},
		"package": {ignoreStdin(runPackage), "package detections into ZTF alerts and produce them"},
		"archive": {ignoreStdin(runArchive), "build a night's tarball of alerts from its topic"},
		"cat":     {runCat, "copy alerts between Kafka topics and Avro/JSON files"},
		"bench":   {ignoreStdin(runBench), "measure brokers side by side"},
		"user":    {runUser, "add, change, remove and list users (SCRAM credentials), on a data dir or a running broker"},
		"filter":  {runFilter, "add, remove, list and test users' filters (CEL over the alerts, matches to filter_<name>), or run them against any Kafka cluster"},
		"acl":     {ignoreStdin(runACL), "add, remove and list ACLs of a running broker (Kafka's CreateAcls, DeleteAcls, DescribeAcls)"},
		"status":  {ignoreStdin(runStatus), "one screen on a running broker: nights, consumer groups and lag, disk, archive, packager"},
		"mirror":  {runMirror, "copy topics from an upstream Kafka cluster into another, exactly once (MirrorMaker)"},
		"portal":  {ignoreStdin(runPortal), "the alert index and portal (search, object pages, /api/v1/) against any Kafka cluster"},
		"reindex": {ignoreStdin(runReindex), "rebuild the alert index from the log"},
	}
}

func ignoreStdin(f func(context.Context, []string, io.Writer, io.Writer) error) func(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
		return f(ctx, args, stdout, stderr)
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		keepSysmonAwake()
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		return 2
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ztfbroker: unknown command %q\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	// The first SIGINT/SIGTERM cancels the context so the command can stop
	// cleanly; a second one kills the process at once (the store recovers).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := cmd.run(ctx, args[1:], stdin, stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintf(stderr, "ztfbroker %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: ztfbroker <command> [flags]\n\ncommands:")
	for _, name := range []string{"serve", "package", "archive", "cat", "mirror", "bench", "verify", "user", "acl", "status", "filter", "portal", "reindex"} {
		fmt.Fprintf(w, "  %-8s %s\n", name, cmds[name].help)
	}
	fmt.Fprintln(w, "\nRun 'ztfbroker <command> -h' for a command's flags.")
}
