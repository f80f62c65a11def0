// Command kfakeserve runs franz-go's kfake as a standalone single-broker
// process with a data directory, so that scripts can measure it beside
// ztfbroker with the same clients and read its CPU time from /proc.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 9192, "Kafka port on 127.0.0.1")
	dataDir := flag.String("data-dir", "", "persistence directory")
	sync := flag.Bool("sync", false, "fsync every write")
	partitions := flag.Int("partitions", 1, "default partitions of auto-created topics")
	flag.Parse()

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
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfakeserve:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "kfakeserve: listening on", c.ListenAddrs())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	c.Close()
}
