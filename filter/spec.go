package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Output formats of a filter's topic.
const (
	// FormatAlert: each match is the alert record as received.
	FormatAlert = "alert"
	// FormatSummary: each match is a small JSON Summary.
	FormatSummary = "summary"
)

// TopicPrefix is put before a filter's name to name its topic.
const TopicPrefix = "filter_"

// maxNameLen keeps filter_<name> within Kafka's 249-byte topic names.
const maxNameLen = 200

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ErrSpec is a filter definition that cannot be saved.
var ErrSpec = errors.New("filter: bad filter")

// Spec is one filter as stored: a record of the specs topic keyed by Name
// with this as JSON value (a record without value removes the filter).
type Spec struct {
	Name string `json:"name"`
	// Owner is the user the filter reads as: it sees only the source
	// topics the owner may read.
	Owner string `json:"owner"`
	// Topics is a glob of source topics (path.Match: * is any run of
	// characters), e.g. ztf_*_programid1.
	Topics     string `json:"topics"`
	Expression string `json:"expression"`
	// Format is FormatAlert (default) or FormatSummary.
	Format string `json:"format,omitempty"`
	// Paused filters are not evaluated; Reason says why (the runner
	// pauses a filter that errors too often). Saving the filter again
	// resumes it.
	Paused bool   `json:"paused,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Start is StartNow (default: the alerts from the save on, that is
	// those the runners have not read when they load the filter, a
	// fraction of a second after the save) or StartEarliest (also every
	// alert still retained).
	Start string `json:"start,omitempty"`
	// BackfillUntil is set by Save for StartEarliest: the end offset of
	// every source partition ("topic/partition") at the save. The group
	// evaluates the filter from these offsets on, one runner's backfill
	// below them; Backfilled marks the backfill done.
	BackfillUntil map[string]int64 `json:"backfill_until,omitempty"`
	Backfilled    bool             `json:"backfilled,omitempty"`
	// Declared filters come from serve's configuration (Declared), which
	// removes them when it no longer lists them.
	Declared bool `json:"declared,omitempty"`

	// offset is the spec record's offset in the specs topic, which the
	// runner's state records name (runnerState).
	offset int64
}

// Where a new filter starts.
const (
	StartNow      = "now"
	StartEarliest = "earliest"
)

// backfilling tells whether a runner still has to backfill s.
func (s Spec) backfilling() bool { return len(s.BackfillUntil) > 0 && !s.Backfilled && !s.Paused }

// cutOver is BackfillUntil by partition; a bad key is left out.
func (s Spec) cutOver() map[topicPartition]int64 {
	out := make(map[topicPartition]int64, len(s.BackfillUntil))
	for k, off := range s.BackfillUntil {
		i := strings.LastIndexByte(k, '/')
		if i < 0 {
			continue
		}
		p, err := strconv.ParseInt(k[i+1:], 10, 32)
		if err == nil && p >= 0 {
			out[topicPartition{k[:i], int32(p)}] = off
		}
	}
	return out
}

// Topic is the filter's output topic.
func (s Spec) Topic() string { return TopicPrefix + s.Name }

// Check names every problem of s other than its expression's.
func (s Spec) Check() error {
	var errs []error
	switch {
	case len(s.Name) > maxNameLen:
		errs = append(errs, fmt.Errorf("%w: name is %d bytes, at most %d", ErrSpec, len(s.Name), maxNameLen))
	case !validName.MatchString(s.Name):
		errs = append(errs, fmt.Errorf("%w: name %q: want letters, digits, '.', '_' or '-'", ErrSpec, s.Name))
	}
	if s.Owner == "" || len(s.Owner) > 256 {
		errs = append(errs, fmt.Errorf("%w: owner: want a user name of at most 256 bytes", ErrSpec))
	}
	if _, err := path.Match(s.Topics, ""); err != nil || s.Topics == "" || len(s.Topics) > 256 {
		errs = append(errs, fmt.Errorf("%w: topics %q: want a glob such as ztf_*_programid1", ErrSpec, s.Topics))
	}
	if strings.HasPrefix(s.Topics, TopicPrefix) || s.Topics == "*" {
		errs = append(errs, fmt.Errorf("%w: topics %q: a filter reads alert topics, not filter topics", ErrSpec, s.Topics))
	}
	if s.Format != "" && s.Format != FormatAlert && s.Format != FormatSummary {
		errs = append(errs, fmt.Errorf("%w: format %q: want %s or %s", ErrSpec, s.Format, FormatAlert, FormatSummary))
	}
	if s.Start != "" && s.Start != StartNow && s.Start != StartEarliest {
		errs = append(errs, fmt.Errorf("%w: start %q: want %s or %s", ErrSpec, s.Start, StartNow, StartEarliest))
	}
	return errors.Join(errs...)
}

// Validate checks s and compiles its expression with c.
func (s Spec) Validate(c *Compiler) error {
	err := s.Check()
	if _, cerr := c.Compile(s.Expression); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// Encode is the stored value.
func (s Spec) Encode() []byte {
	b, _ := json.Marshal(s) // a struct of strings and bools always encodes
	return b
}

// DecodeSpec reads a stored value.
func DecodeSpec(b []byte) (Spec, error) {
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%w: %v", ErrSpec, err)
	}
	return s, nil
}

// matches tells whether topic is one of the filter's sources.
func (s Spec) matches(topic string) bool {
	ok, _ := path.Match(s.Topics, topic)
	return ok
}

// globRegexp is the regular expression of a path.Match glob, for the
// consumer's topic subscription.
func globRegexp(glob string) string {
	var b strings.Builder
	b.WriteByte('^')
	inClass := false
	for _, r := range glob {
		switch {
		case inClass:
			b.WriteRune(r)
			if r == ']' {
				inClass = false
			}
		case r == '*':
			b.WriteString(".*")
		case r == '?':
			b.WriteByte('.')
		case r == '[':
			inClass = true
			b.WriteByte('[')
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteByte('$')
	return b.String()
}

// Summary is a match in FormatSummary: enough for a phone or chat
// notification, with a link to the alert's page.
type Summary struct {
	ObjectID string  `json:"objectId"`
	Candid   int64   `json:"candid"`
	RA       float64 `json:"ra"`
	Dec      float64 `json:"dec"`
	JD       float64 `json:"jd"`
	Magpsf   float64 `json:"magpsf"`
	Fid      int     `json:"fid"`
	Link     string  `json:"link,omitempty"`
	Filter   string  `json:"filter"`
}

// summarize makes the Summary of a, its link from template (with
// {objectId} and {candid} replaced; empty: none).
func summarize(a *Alert, filter, template string) []byte {
	link := ""
	if template != "" {
		link = strings.NewReplacer("{objectId}", a.ObjectID, "{candid}", fmt.Sprint(a.Candid)).Replace(template)
	}
	b, _ := json.Marshal(Summary{ObjectID: a.ObjectID, Candid: a.Candid, RA: a.Candidate.RA, Dec: a.Candidate.Dec,
		JD: a.Candidate.JD, Magpsf: float64(a.Candidate.Magpsf), Fid: a.Candidate.Fid, Link: link, Filter: filter})
	return b
}
