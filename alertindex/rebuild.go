package alertindex

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// RebuildReport is what Rebuild did.
type RebuildReport struct {
	Topics, Alerts, Undecodable int
	Digest                      string
}

// Rebuild makes the index in cfg.Dir anew from the log: every topic
// matching cfg.Topics, from each partition's log start offset to its high
// watermark, into a fresh store beside it that then replaces the old one;
// and it sets the group's committed offsets to those high watermarks, so a
// follower started after it goes on from there. The group must have no
// member (stop the portal first); Rebuild refuses otherwise.
func Rebuild(ctx context.Context, cfg Config, logger *zap.Logger) (RebuildReport, error) {
	var rep RebuildReport
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	re := regexp.MustCompile(cfg.Topics)
	admCl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Bootstrap...), clientVersions()}, cfg.ClientOpts...)...)
	if err != nil {
		return rep, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	groups, err := adm.DescribeGroups(ctx, cfg.Group)
	if err == nil {
		if g, ok := groups[cfg.Group]; ok && len(g.Members) > 0 {
			return rep, fmt.Errorf("alertindex: group %s has %d members: stop the portal (or serve with portal.enabled: false) before reindexing", cfg.Group, len(g.Members))
		}
	}
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		return rep, fmt.Errorf("alertindex: list topics: %w", err)
	}
	var topics []string
	for _, t := range listed.Names() {
		if re.MatchString(t) {
			topics = append(topics, t)
		}
	}
	rep.Topics = len(topics)
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return rep, fmt.Errorf("alertindex: log start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return rep, fmt.Errorf("alertindex: high watermarks: %w", err)
	}
	assign := map[string]map[int32]kgo.Offset{}
	remaining := 0
	ends.Each(func(o kadm.ListedOffset) {
		s, ok := starts.Lookup(o.Topic, o.Partition)
		if o.Err != nil || !ok || s.Err != nil || s.Offset >= o.Offset {
			return
		}
		if assign[o.Topic] == nil {
			assign[o.Topic] = map[int32]kgo.Offset{}
		}
		assign[o.Topic][o.Partition] = kgo.NewOffset().At(s.Offset)
		remaining++
	})

	fresh := cfg.Dir + ".rebuild"
	if err := os.RemoveAll(fresh); err != nil {
		return rep, err
	}
	idx, err := Open(fresh, cfg.CacheBytes, logger)
	if err != nil {
		return rep, err
	}
	closeIdx := func() error {
		if idx == nil {
			return nil
		}
		err := idx.Close()
		idx = nil
		return err
	}
	defer closeIdx()
	if remaining > 0 {
		if err := consumeTo(ctx, cfg, assign, ends, idx, &rep, logger); err != nil {
			return rep, err
		}
	}
	if rep.Digest, _, err = idx.Digest(); err != nil {
		return rep, err
	}
	if err := closeIdx(); err != nil {
		return rep, err
	}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return rep, err
	}
	if err := os.Rename(fresh, cfg.Dir); err != nil {
		return rep, err
	}
	commits := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			commits.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset, LeaderEpoch: -1})
		}
	})
	if len(commits) > 0 {
		resp, err := adm.CommitOffsets(ctx, cfg.Group, commits)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return rep, fmt.Errorf("alertindex: the index is rebuilt but group %s's offsets were not set: %w", cfg.Group, err)
		}
	}
	return rep, nil
}

// consumeTo reads the assigned partitions up to ends into idx.
func consumeTo(ctx context.Context, cfg Config, assign map[string]map[int32]kgo.Offset, ends kadm.ListedOffsets,
	idx *Index, rep *RebuildReport, logger *zap.Logger) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Bootstrap...), clientVersions(),
		kgo.ConsumePartitions(assign), kgo.FetchMaxBytes(16 << 20), kgo.FetchMaxPartitionBytes(4 << 20)}, cfg.ClientOpts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	left := map[string]map[int32]bool{}
	for t, ps := range assign {
		left[t] = map[int32]bool{}
		for p := range ps {
			left[t][p] = true
		}
	}
	dec := Decoder{Schemas: avrofile.NewSchemas(0)}
	pending := 0
	for _, ps := range left {
		pending += len(ps)
	}
	var sums []Summary
	for pending > 0 {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		fs := cl.PollRecords(pctx, 2000)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fs.Err0(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("alertindex: reindex fetch: %w", err)
		}
		sums = sums[:0]
		recs := fs.Records()
		if len(recs) == 0 {
			return fmt.Errorf("alertindex: reindex: no records for 30 s with %d partitions unfinished", pending)
		}
		for _, r := range recs {
			end, _ := ends.Lookup(r.Topic, r.Partition)
			if r.Offset >= end.Offset {
				continue
			}
			s, err := dec.Decode(r.Value)
			if err != nil {
				rep.Undecodable++
				logger.Warn("alert not indexed: it does not decode", zap.String("topic", r.Topic),
					zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset), zap.Error(err))
			} else {
				s.Topic, s.Partition, s.Offset = r.Topic, r.Partition, r.Offset
				sums = append(sums, s)
			}
			if r.Offset == end.Offset-1 && left[r.Topic][r.Partition] {
				delete(left[r.Topic], r.Partition)
				pending--
			}
		}
		added, err := idx.Add(sums)
		if err != nil {
			return err
		}
		rep.Alerts += added
	}
	return nil
}
