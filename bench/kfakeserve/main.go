// Command kfakeserve runs franz-go's kfake as a standalone single-broker
// process with a data directory, so that it can be measured beside ztfbroker
// with the same clients and its CPU time and RSS read from /proc: it is the
// kfake of `ztfbroker bench --with-kfake` (found as ztfbroker-kfake or
// kfakeserve next to ztfbroker, on PATH, or by --kfake-binary) and of
// scripts/kcat-vs-kfake.sh. It is a command of its own so that the ztfbroker
// binary does not link kfake, a test fake at an untagged version.
//
//	go build -o ztfbroker-kfake ./bench/kfakeserve
//
// It listens on 127.0.0.1:PORT, prints "kfakeserve: listening on
// 127.0.0.1:PORT" to stderr once it accepts connections, and stops on
// SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 9192, "Kafka port on 127.0.0.1 (0: a free port, printed)")
	dataDir := flag.String("data-dir", "", "persistence directory (default: none, in memory)")
	sync := flag.Bool("sync", false, "fsync every write")
	partitions := flag.Int("partitions", 1, "default partitions of auto-created topics")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "kfakeserve: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if *port < 0 || *port > 65535 {
		fmt.Fprintf(os.Stderr, "kfakeserve: --port %d out of 0..65535\n", *port)
		os.Exit(2)
	}

	opts := []kfake.Opt{
		kfake.Ports(*port),
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(*partitions),
	}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	if *sync {
		opts = append(opts, kfake.SyncWrites())
	}
	// Signals are caught before the listener opens, so that a parent which
	// stops kfakeserve as soon as it answers always gets a clean Close.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfakeserve:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "kfakeserve: listening on", strings.Join(c.ListenAddrs(), ","))
	<-sig
	c.Close()
}
