package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// groupRecord is the value under group/<group>. Part of the on-disk format;
// add fields, never rename them.
type groupRecord struct {
	Version      int            `json:"v"`
	State        string         `json:"state"` // Empty, Stable or CompletingRebalance
	ProtocolType string         `json:"protocol_type"`
	Protocol     string         `json:"protocol,omitempty"`
	Generation   int32          `json:"generation"`
	Leader       string         `json:"leader,omitempty"`
	StateSince   time.Time      `json:"state_since"`
	Members      []memberRecord `json:"members,omitempty"`
}

type memberRecord struct {
	ID               string          `json:"id"`
	InstanceID       *string         `json:"instance_id,omitempty"`
	ClientID         string          `json:"client_id"`
	ClientHost       string          `json:"client_host"`
	SessionTimeout   int32           `json:"session_timeout_ms"`
	RebalanceTimeout int32           `json:"rebalance_timeout_ms"`
	Protocols        []protocolEntry `json:"protocols"`
	Assignment       []byte          `json:"assignment,omitempty"`
}

type protocolEntry struct {
	Name     string `json:"name"`
	Metadata []byte `json:"metadata"`
}

const groupRecordVersion = 1

// offsetRecord is the value under offset/<group:s><topic:s><partition:i32>
// (length-prefixed strings; see doc.go). Part of the on-disk format.
type offsetRecord struct {
	Offset      int64     `json:"offset"`
	LeaderEpoch int32     `json:"leader_epoch"`
	Metadata    *string   `json:"metadata,omitempty"`
	Committed   time.Time `json:"committed"`
}

func offsetGroupPrefix(group string) []byte {
	return appendKeyString([]byte(offsetKeyPrefix), group)
}

func offsetKey(group, topic string, partition int32) []byte {
	k := appendKeyString(offsetGroupPrefix(group), topic)
	return binary32(k, partition)
}

func binary32(dst []byte, v int32) []byte {
	return append(dst, byte(uint32(v)>>24), byte(uint32(v)>>16), byte(uint32(v)>>8), byte(v))
}

func parseOffsetKey(k []byte) (group, topic string, partition int32, ok bool) {
	rest := k[len(offsetKeyPrefix):]
	if group, rest, ok = readKeyString(rest); !ok {
		return
	}
	if topic, rest, ok = readKeyString(rest); !ok || len(rest) != 4 {
		return "", "", 0, false
	}
	partition = int32(uint32(rest[0])<<24 | uint32(rest[1])<<16 | uint32(rest[2])<<8 | uint32(rest[3]))
	return group, topic, partition, true
}

// persistLocked writes g's record (synced). Only Empty, CompletingRebalance
// and Stable are recorded: those are the states a rebalance ends in.
func (g *group) persistLocked() {
	r := groupRecord{
		Version:      groupRecordVersion,
		State:        g.state.String(),
		ProtocolType: g.protocolType,
		Protocol:     g.protocol,
		Generation:   g.generation,
		Leader:       g.leader,
		StateSince:   g.stateSince,
	}
	for _, m := range g.sortedMembers() {
		mr := memberRecord{
			ID:               m.id,
			InstanceID:       m.instanceID,
			ClientID:         m.clientID,
			ClientHost:       m.clientHost,
			SessionTimeout:   int32(m.sessionTimeout / time.Millisecond),
			RebalanceTimeout: int32(m.rebalanceTimeout / time.Millisecond),
			Assignment:       m.assignment,
		}
		for _, p := range m.protocols {
			mr.Protocols = append(mr.Protocols, protocolEntry{Name: p.Name, Metadata: p.Metadata})
		}
		r.Members = append(r.Members, mr)
	}
	v, err := json.Marshal(r)
	if err == nil {
		// Under the disk's mark the group runs on from memory; it is
		// written again at its next change.
		err = setMeta(g.c.disk, g.c.db, groupKey(g.name), v)
	}
	if err != nil {
		g.c.logger.Error("persist group", zap.String("group", g.name), zap.Error(err))
		return
	}
	g.persisted = true
}

// load restores every group and committed offset. Members of a Stable group
// come back Stable with a fresh session, so that consumers keep heartbeating
// through a broker restart without a rebalance; a group caught mid-rebalance
// comes back PreparingRebalance and its members rejoin.
func (c *GroupCoordinator) load() error {
	now := c.now()
	it, err := c.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(groupKeyPrefix),
		UpperBound: keyPrefixEnd([]byte(groupKeyPrefix)),
	})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		name := string(it.Key()[len(groupKeyPrefix):])
		var r groupRecord
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			it.Close()
			return fmt.Errorf("group %q record: %w", name, err)
		}
		g := newGroup(c, name)
		g.persisted = true
		g.protocolType = r.ProtocolType
		g.protocol = r.Protocol
		g.generation = r.Generation
		g.leader = r.Leader
		g.stateSince = r.StateSince
		for _, mr := range r.Members {
			m := &groupMember{
				id:               mr.ID,
				instanceID:       mr.InstanceID,
				clientID:         mr.ClientID,
				clientHost:       mr.ClientHost,
				sessionTimeout:   time.Duration(mr.SessionTimeout) * time.Millisecond,
				rebalanceTimeout: time.Duration(mr.RebalanceTimeout) * time.Millisecond,
				assignment:       mr.Assignment,
				protocolType:     r.ProtocolType,
			}
			for _, p := range mr.Protocols {
				m.protocols = append(m.protocols, kmsg.JoinGroupRequestProtocol{Name: p.Name, Metadata: p.Metadata})
			}
			m.deadline = now.Add(m.sessionTimeout)
			g.seq++
			m.seq = g.seq
			g.members[m.id] = m
			if m.instanceID != nil {
				g.static[*m.instanceID] = m.id
			}
		}
		switch {
		case len(g.members) == 0:
			g.state = groupEmpty
		case r.State == groupStable.String():
			g.state = groupStable
			g.stateSince = now
		default:
			g.state = groupPreparingRebalance
			g.stateSince = now
			g.rebalanceDeadline = now.Add(g.maxRebalanceTimeout())
		}
		c.groups[name] = g
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}

	it, err = c.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(offsetKeyPrefix),
		UpperBound: keyPrefixEnd([]byte(offsetKeyPrefix)),
	})
	if err != nil {
		return err
	}
	n := 0
	for it.First(); it.Valid(); it.Next() {
		group, topic, partition, ok := parseOffsetKey(it.Key())
		if !ok {
			it.Close()
			return fmt.Errorf("bad offset key %q", it.Key())
		}
		var r offsetRecord
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			it.Close()
			return fmt.Errorf("offset record of group %q %s/%d: %w", group, topic, partition, err)
		}
		g := c.groups[group]
		if g == nil {
			g = newGroup(c, group)
			c.groups[group] = g
		}
		g.offsets[groupTP{topic, partition}] = offsetCommit(r)
		n++
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	if len(c.groups) > 0 {
		c.logger.Info("groups loaded", zap.Int("groups", len(c.groups)), zap.Int("offsets", n))
	}
	return nil
}
