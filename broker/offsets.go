package broker

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// OffsetCommit serves OffsetCommit v2-9. A commit with a negative generation
// to a group without members is a "simple" commit (no group management,
// e.g. kcat -o with a group id, or an admin reset); otherwise the member id
// and generation must be current. The offsets are synced to pebble before
// the answer.
func (c *GroupCoordinator) OffsetCommit(_ context.Context, req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
		for j, p := range t.Partitions {
			switch {
			case p.Metadata != nil && len(*p.Metadata) > offsetMetadataMax:
				codes[i][j] = kerr.OffsetMetadataTooLarge.Code
			case !c.partitionExists(t.Topic, p.Partition):
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
			}
		}
	}
	answer := func(all int16) *kmsg.OffsetCommitResponse {
		for i, t := range req.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for j, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = codes[i][j]
				if all != 0 {
					rp.ErrorCode = all
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}

	g := c.lockGroup(req.Group, req.Generation < 0)
	if g == nil {
		// A generation from a group this coordinator does not know.
		return answer(kerr.IllegalGeneration.Code)
	}
	defer g.mu.Unlock()
	now := c.now()
	if code := g.commitAllowedLocked(req, now); code != 0 {
		return answer(code)
	}
	// A full disk refuses the commit with a code clients retry, before
	// pebble can meet it (see diskspace.go).
	if err := c.disk.refuseMeta(); err != nil {
		c.logger.Warn("offset commit refused", zap.String("group", g.name), zap.Error(err))
		return answer(kerr.CoordinatorLoadInProgress.Code)
	}
	b := c.db.NewBatch()
	defer b.Close()
	var commits []groupTP
	var values []offsetCommit
	for i, t := range req.Topics {
		for j, p := range t.Partitions {
			if codes[i][j] != 0 {
				continue
			}
			oc := offsetCommit{Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: p.Metadata, Committed: now}
			if req.Version < 6 {
				oc.LeaderEpoch = -1
			}
			v, _ := json.Marshal(offsetRecord(oc))
			_ = b.Set(offsetKey(g.name, t.Topic, p.Partition), v, nil)
			commits = append(commits, groupTP{t.Topic, p.Partition})
			values = append(values, oc)
		}
	}
	if len(commits) > 0 {
		if err := commitMeta(c.disk, b); err != nil {
			c.logger.Error("commit offsets", zap.String("group", g.name), zap.Error(err))
			return answer(kerr.CoordinatorLoadInProgress.Code)
		}
	}
	for i, tp := range commits {
		g.offsets[tp] = values[i]
	}
	return answer(0)
}

// partitionExists is false only when the high-watermark source says the
// partition is unknown: other errors leave the commit to proceed.
func (c *GroupCoordinator) partitionExists(topic string, partition int32) bool {
	if c.hwm == nil {
		return true
	}
	_, err := c.hwm(topic, partition)
	return !errors.Is(err, kerr.UnknownTopicOrPartition)
}

// commitAllowedLocked checks the committer's membership and generation, and
// refreshes its session when it is a member.
func (g *group) commitAllowedLocked(req *kmsg.OffsetCommitRequest, now time.Time) int16 {
	if g.fencedLocked(req.InstanceID, req.MemberID) {
		return kerr.FencedInstanceID.Code
	}
	if req.Generation < 0 && g.state == groupEmpty {
		return 0
	}
	m := g.members[req.MemberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	if req.Generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	m.deadline = now.Add(m.sessionTimeout)
	if g.state == groupCompletingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}

// OffsetFetch serves OffsetFetch v1-8 (several groups per request from v8).
// An unknown group or partition answers offset -1 without error, as Kafka.
func (c *GroupCoordinator) OffsetFetch(_ context.Context, req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			fg := kmsg.NewOffsetFetchResponseGroup()
			fg.Group = rg.Group
			var topics []offsetFetchTopic
			if rg.Topics != nil {
				topics = make([]offsetFetchTopic, 0, len(rg.Topics))
				for _, t := range rg.Topics {
					topics = append(topics, offsetFetchTopic{t.Topic, t.Partitions})
				}
			}
			for _, t := range c.fetchOffsets(rg.Group, topics, rg.Topics == nil) {
				ft := kmsg.NewOffsetFetchResponseGroupTopic()
				ft.Topic = t.topic
				for _, p := range t.partitions {
					fp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					fp.Partition, fp.Offset, fp.LeaderEpoch, fp.Metadata = p.partition, p.offset, p.leaderEpoch, p.metadata
					ft.Partitions = append(ft.Partitions, fp)
				}
				fg.Topics = append(fg.Topics, ft)
			}
			resp.Groups = append(resp.Groups, fg)
		}
		return resp
	}
	var topics []offsetFetchTopic
	for _, t := range req.Topics {
		topics = append(topics, offsetFetchTopic{t.Topic, t.Partitions})
	}
	all := req.Topics == nil && req.Version >= 2
	for _, t := range c.fetchOffsets(req.Group, topics, all) {
		ft := kmsg.NewOffsetFetchResponseTopic()
		ft.Topic = t.topic
		for _, p := range t.partitions {
			fp := kmsg.NewOffsetFetchResponseTopicPartition()
			fp.Partition, fp.Offset, fp.LeaderEpoch, fp.Metadata = p.partition, p.offset, p.leaderEpoch, p.metadata
			ft.Partitions = append(ft.Partitions, fp)
		}
		resp.Topics = append(resp.Topics, ft)
	}
	return resp
}

type offsetFetchTopic struct {
	topic      string
	partitions []int32
}

type fetchedTopic struct {
	topic      string
	partitions []fetchedOffset
}

type fetchedOffset struct {
	partition   int32
	offset      int64
	leaderEpoch int32
	metadata    *string
}

// fetchOffsets reads a group's committed offsets: those of topics, or every
// one when all is set.
func (c *GroupCoordinator) fetchOffsets(name string, topics []offsetFetchTopic, all bool) []fetchedTopic {
	committed := map[groupTP]offsetCommit{}
	if g := c.lockGroup(name, false); g != nil {
		for tp, oc := range g.offsets {
			committed[tp] = oc
		}
		g.mu.Unlock()
	}
	if all {
		byTopic := map[string][]int32{}
		for tp := range committed {
			byTopic[tp.topic] = append(byTopic[tp.topic], tp.partition)
		}
		topics = topics[:0]
		for t, ps := range byTopic {
			sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
			topics = append(topics, offsetFetchTopic{t, ps})
		}
		sort.Slice(topics, func(i, j int) bool { return topics[i].topic < topics[j].topic })
	}
	out := make([]fetchedTopic, 0, len(topics))
	for _, t := range topics {
		ft := fetchedTopic{topic: t.topic}
		for _, p := range t.partitions {
			fo := fetchedOffset{partition: p, offset: -1, leaderEpoch: -1, metadata: kmsg.StringPtr("")}
			if oc, ok := committed[groupTP{t.topic, p}]; ok {
				fo.offset, fo.leaderEpoch = oc.Offset, oc.LeaderEpoch
				if oc.Metadata != nil {
					fo.metadata = kmsg.StringPtr(*oc.Metadata)
				}
			}
			ft.partitions = append(ft.partitions, fo)
		}
		out = append(out, ft)
	}
	return out
}

// OffsetDelete serves OffsetDelete v0: offsets of an empty group are
// deleted; a consumer group with members keeps those of topics it is
// subscribed to (GROUP_SUBSCRIBED_TO_TOPIC).
func (c *GroupCoordinator) OffsetDelete(_ context.Context, req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	g := c.lockGroup(req.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	}
	defer g.mu.Unlock()
	var subscribed map[string]bool
	if g.state != groupEmpty {
		if g.protocolType != "consumer" {
			resp.ErrorCode = kerr.NonEmptyGroup.Code
			return resp
		}
		subscribed = g.subscribedTopicsLocked()
	}
	b := c.db.NewBatch()
	defer b.Close()
	var deleted []groupTP
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			if subscribed[t.Topic] {
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			} else if _, ok := g.offsets[groupTP{t.Topic, p.Partition}]; ok {
				_ = b.Delete(offsetKey(g.name, t.Topic, p.Partition), nil)
				deleted = append(deleted, groupTP{t.Topic, p.Partition})
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if len(deleted) > 0 {
		if err := b.Commit(pebble.Sync); err != nil {
			c.logger.Error("delete offsets", zap.String("group", g.name), zap.Error(err))
			resp.ErrorCode = kerr.UnknownServerError.Code
			resp.Topics = nil
			return resp
		}
	}
	for _, tp := range deleted {
		delete(g.offsets, tp)
	}
	return resp
}

// subscribedTopicsLocked reads the topics in the members' consumer
// protocol metadata.
func (g *group) subscribedTopicsLocked() map[string]bool {
	topics := map[string]bool{}
	for _, m := range g.members {
		for _, p := range m.protocols {
			if g.protocol != "" && p.Name != g.protocol {
				continue
			}
			var md kmsg.ConsumerMemberMetadata
			if err := md.ReadFrom(p.Metadata); err != nil {
				continue
			}
			for _, t := range md.Topics {
				topics[t] = true
			}
		}
	}
	return topics
}

// expireOffsetsLocked drops committed offsets past retention: all of them
// once a managed group has been Empty for the retention time, one by one by
// commit time for a group that never had members (KIP-211), and by commit
// time those of topics a Stable consumer group no longer subscribes to
// (KIP-496: a group that moves from one night's topic to the next does not
// keep every night's offsets).
func (g *group) expireOffsetsLocked(now time.Time) {
	if len(g.offsets) == 0 {
		return
	}
	var subscribed map[string]bool
	switch {
	case g.state == groupEmpty:
	case g.state == groupStable && g.protocolType == "consumer":
		subscribed = g.subscribedTopicsLocked()
	default:
		return
	}
	retention := g.c.cfg.OffsetsRetention
	var expired []groupTP
	for tp, oc := range g.offsets {
		since := oc.Committed
		if g.state == groupEmpty && g.protocolType != "" {
			since = g.stateSince
		}
		if subscribed[tp.topic] {
			continue
		}
		if now.Sub(since) >= retention {
			expired = append(expired, tp)
		}
	}
	if len(expired) == 0 {
		return
	}
	b := g.c.db.NewBatch()
	defer b.Close()
	for _, tp := range expired {
		_ = b.Delete(offsetKey(g.name, tp.topic, tp.partition), nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		g.c.logger.Error("expire offsets", zap.String("group", g.name), zap.Error(err))
		return
	}
	for _, tp := range expired {
		delete(g.offsets, tp)
	}
	g.c.logger.Info("offsets expired", zap.String("group", g.name), zap.Int("partitions", len(expired)))
}

// removableLocked reports whether g holds nothing worth keeping: no members,
// no member id handed out, no offsets. A group that never formed goes at
// once; one that did stays listed as Empty until the retention check.
func (g *group) removableLocked(retentionPass bool) bool {
	return g.state == groupEmpty && len(g.members) == 0 && len(g.pending) == 0 &&
		len(g.offsets) == 0 && (g.generation == 0 || retentionPass)
}
