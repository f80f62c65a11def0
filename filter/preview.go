package filter

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// PreviewResult counts what a preview read.
type PreviewResult struct {
	Alerts  int `json:"alerts"`
	Matches int `json:"matches"`
	Errors  int `json:"errors"`
	// Unread are records that do not decode as alerts.
	Unread int `json:"unread"`
	// Truncated: the preview stopped at PreviewQuery.MaxAlerts (or, for
	// the API's previews, at their time limit).
	Truncated bool `json:"truncated"`
}

// PreviewQuery is what a preview evaluates: Expr over the alerts of the
// topics matching the glob Topics sent since Since.
type PreviewQuery struct {
	Expr   *Expression
	Topics string
	Since  time.Time
	// Readable, when set, leaves out the topics it refuses: those the
	// user asking may not read.
	Readable func(topic string) bool
	// MaxAlerts stops the preview after that many alerts (0: none).
	MaxAlerts int
}

// Preview evaluates q.Expr over the alerts of q's topics sent since
// q.Since, up to the end offsets when it starts: the matches a filter
// would have had. Each match is handed to match. opts reach the cluster.
func Preview(ctx context.Context, q PreviewQuery, match func(*kgo.Record, *Alert), opts ...kgo.Opt) (PreviewResult, error) {
	var res PreviewResult
	e, glob, since := q.Expr, q.Topics, q.Since
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return res, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tds, err := adm.ListTopics(ctx)
	if err != nil {
		return res, fmt.Errorf("filter: list topics: %w", err)
	}
	var topics []string
	for _, t := range tds.Names() {
		if ok, _ := path.Match(glob, t); ok && (q.Readable == nil || q.Readable(t)) {
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		return res, nil
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return res, fmt.Errorf("filter: end offsets: %w", err)
	}
	from, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topics...)
	if err != nil {
		return res, fmt.Errorf("filter: offsets since %s: %w", since.Format(time.RFC3339), err)
	}
	parts := map[string]map[int32]kgo.Offset{}
	want := map[topicPartition]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		f, ok := from.Lookup(o.Topic, o.Partition)
		if o.Err != nil || !ok || f.Err != nil || f.Offset >= o.Offset {
			return
		}
		if parts[o.Topic] == nil {
			parts[o.Topic] = map[int32]kgo.Offset{}
		}
		parts[o.Topic][o.Partition] = kgo.NewOffset().At(f.Offset)
		want[topicPartition{o.Topic, o.Partition}] = o.Offset
	})
	if len(want) == 0 {
		return res, nil
	}
	cl.AddConsumePartitions(parts)
	d := NewDecoder()
	for len(want) > 0 && !res.Truncated {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := fs.Err(); err != nil {
			return res, fmt.Errorf("filter: read: %w", err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			tp := topicPartition{rec.Topic, rec.Partition}
			end, ok := want[tp]
			if !ok || rec.Offset >= end || res.Truncated {
				return
			}
			if q.MaxAlerts > 0 && res.Alerts+res.Unread >= q.MaxAlerts {
				res.Truncated = true
				return
			}
			if rec.Offset+1 >= end {
				delete(want, tp)
			}
			a := &Alert{Topic: rec.Topic}
			if err := d.Decode(rec.Value, Parts{History: e.History, Forced: e.Forced, Cutouts: e.Cutouts}, a); err != nil {
				res.Unread++
				return
			}
			res.Alerts++
			m, err := e.Eval(a)
			switch {
			case err != nil:
				res.Errors++
			case m:
				res.Matches++
				match(rec, a)
			}
		})
	}
	return res, nil
}
