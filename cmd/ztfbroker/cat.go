package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/alertcat"
	"github.com/ztfbroker/ztfbroker/protocol"
)

const catUsage = `usage: ztfbroker cat [flags] SOURCE... DEST

SOURCE and DEST are kafka://[group@]host:port[,host:port]/topic, a .avro or
.json/.jsonl file, a directory (DEST: one <candid>.avro per alert; end it
with /), or - for stdin/stdout. Without a group, Kafka is read from the
earliest offset and nothing is committed; with a group, reading resumes and
commits.

A SOURCE topic may be a glob, ztf_2026*_programid1 (as authz.public.topics),
or a regular expression starting with ^. A DEST of kafka://host:port/ (no
topic) writes each alert to the topic it was read from:
  ztfbroker cat --eof --create 'kafka://a:9092/ztf_*_programid1' kafka://b:9092/
Into a directory, a pattern (or several kafka:// sources) writes one
subfolder per topic. A file is never overwritten: a candid seen again is
<candid>_2.avro, _3, ... as in the nightly archive.

Records keep the key, timestamp and headers they were read with; alerts
from files are keyed by objectId and stamped with the send time (--timestamp
jd: the observation time, candidate.jd).

Over TLS (--tls-ca, or --tls for the system's roots) and with a SASL login
(--sasl-user, --sasl-mechanism, the password from --sasl-password-file or
ZTFBROKER_SASL_PASSWORD), the same for every kafka:// SOURCE and DEST:
  ztfbroker cat --eof --tls-ca ca.pem --sasl-user alice --sasl-password-file alice.pw \
    kafka://alerts.example.org:9093/ztf_20261129_programid1 night.avro

JSON alerts are one object per line: "$avro" (sync marker, header keys and
writer schema, so the Avro bytes can be rebuilt exactly), "$kafka" (where the
record was read), then every field of the alert in schema order.

flags:
`

// runCat is `ztfbroker cat`: copy alerts between Kafka topics, Avro files and
// JSON.
func runCat(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, catUsage)
		fs.PrintDefaults()
	}
	var (
		cfg     alertcat.Config
		start   string
		bytesAs string
		schemas string
		sec     alertcat.Security
		pwFile  string
	)
	fs.StringVar(&cfg.From, "from", "", "format of file and stdin sources: avro or json (default: by extension, or sniffed)")
	fs.StringVar(&cfg.To, "to", "", "format of file and stdout destinations: avro or json (default: by extension; json for -)")
	fs.BoolVar(&cfg.EOF, "eof", false, "stop each Kafka source at the end offsets taken when it starts")
	fs.Int64Var(&cfg.Count, "count", 0, "stop after `N` alerts (0: no limit)")
	fs.StringVar(&start, "start", "", "read Kafka from the first record at or after this `time` (RFC 3339, or a duration ago such as 2h)")
	fs.BoolVar(&cfg.Progress, "progress", false, "report counts and rates on stderr every second")
	fs.StringVar(&cfg.Registry, "registry", "", "schema registry `URL` for Confluent-framed messages (GET URL/schemas/ids/<id>)")
	fs.StringVar(&bytesAs, "bytes", "base64", "bytes fields in JSON: base64 or datauri")
	fs.StringVar(&schemas, "schema", "", "comma-separated .avsc `files` (dependency order) for JSON alerts without \"$avro\"")
	fs.StringVar(&cfg.Timestamps, "timestamp", alertcat.TimestampsKeep, "`mode` of produced records' timestamps: keep (Kafka records keep theirs; alerts from files get the send time), jd (candidate.jd, the observation time) or now (the send time)")
	fs.BoolVar(&cfg.Create, "create", false, "create a missing destination topic with the broker's defaults")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "bound on connecting, metadata requests, and delivery that makes no progress")
	fs.BoolVar(&sec.TLS, "tls", false, "reach Kafka over TLS, trusting the system's roots")
	fs.StringVar(&sec.CAFile, "tls-ca", "", "reach Kafka over TLS, trusting this PEM `file`")
	fs.StringVar(&sec.SASLUser, "sasl-user", "", "log in to Kafka with SASL as this `user`")
	fs.StringVar(&sec.SASLMechanism, "sasl-mechanism", "", "SASL mechanism: SCRAM-SHA-512 (the default with --sasl-user), SCRAM-SHA-256 or PLAIN (over TLS only)")
	fs.StringVar(&pwFile, "sasl-password-file", "", "`file` whose first line is --sasl-user's password (default: $ZTFBROKER_SASL_PASSWORD)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return errors.New("cat: need SOURCE... DEST")
	}
	cfg.Sources = fs.Args()[:fs.NArg()-1]
	cfg.Dest = fs.Arg(fs.NArg() - 1)
	switch bytesAs {
	case "base64":
		cfg.Bytes = alertcat.Base64
	case "datauri", "data":
		cfg.Bytes = alertcat.DataURI
	default:
		return fmt.Errorf("cat: --bytes must be base64 or datauri, not %q", bytesAs)
	}
	if schemas != "" {
		cfg.SchemaFiles = strings.Split(schemas, ",")
	}
	if start != "" {
		t, err := parseStart(start, time.Now())
		if err != nil {
			return err
		}
		cfg.Start = t
	}
	opts, err := catSecurity(sec, pwFile)
	if err != nil {
		return err
	}
	cfg.KafkaOpts = append(cfg.KafkaOpts, opts...)
	cfg.Stdin, cfg.Stdout, cfg.Stderr = stdin, stdout, stderr
	return alertcat.Run(ctx, cfg)
}

// catSecurity checks cat's TLS and SASL flags and makes the Kafka client
// options from them (alertcat.Security, as mirror's), the password read
// from the file or the environment.
func catSecurity(sec alertcat.Security, pwFile string) ([]kgo.Opt, error) {
	if sec.SASLUser != "" && sec.SASLMechanism == "" {
		sec.SASLMechanism = protocol.MechanismScramSHA512
	}
	// Security names its settings as the YAML does; cat's are flags.
	flagNames := strings.NewReplacer("sasl.mechanism", "sasl-mechanism", "sasl.user", "sasl-user", "tls ca", "--tls-ca")
	if err := sec.Validate("--"); err != nil {
		return nil, errors.New("cat: " + flagNames.Replace(err.Error()))
	}
	switch {
	case sec.SASLUser == "":
	case pwFile != "":
		pass, err := readPassword(pwFile, nil)
		if err != nil {
			return nil, fmt.Errorf("cat: --sasl-password-file: %w", err)
		}
		sec.SASLPassword = pass
	case os.Getenv("ZTFBROKER_SASL_PASSWORD") != "":
		sec.SASLPassword = os.Getenv("ZTFBROKER_SASL_PASSWORD")
	default:
		return nil, errors.New("cat: --sasl-user needs --sasl-password-file or ZTFBROKER_SASL_PASSWORD")
	}
	opts, err := sec.KafkaOpts()
	if err != nil {
		return nil, errors.New("cat: " + flagNames.Replace(err.Error()))
	}
	return opts, nil
}

func parseStart(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cat: --start %q: want RFC 3339 (2026-11-29T03:00:00Z), a date, or a duration ago (2h)", s)
}
