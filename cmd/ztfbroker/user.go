package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/protocol"
)

// userStore is what `ztfbroker user` changes: the data directory itself
// when no broker holds it, else a running broker over the wire
// (Describe/AlterUserScramCredentials), since pebble is single-process.
type userStore interface {
	users(ctx context.Context) (map[string][]string, error) // user -> mechanisms
	set(ctx context.Context, user, password string, mechanisms []string, iterations int) error
	remove(ctx context.Context, user string, mechanisms []string) error
	close()
}

// runUser is `ztfbroker user add|passwd|remove|list|stats`.
func runUser(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	usage := errors.New("usage: ztfbroker user add|passwd|remove|list|stats [flags] [NAME]")
	if len(args) == 0 {
		return usage
	}
	verb := args[0]
	if verb == "stats" {
		return runUserStats(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("user "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "the broker's data directory: changed directly when no broker runs on it, else through --bootstrap")
	bootstrap := fs.String("bootstrap", "localhost:9092", "a running broker's Kafka listener (loopback is a superuser by default)")
	passwordFile := fs.String("password-file", "", "file whose first line is the password (default: the first line of stdin)")
	mechs := fs.String("mechanisms", "SCRAM-SHA-256,SCRAM-SHA-512", "SCRAM mechanisms to store credentials for")
	iterations := fs.Int("iterations", 8192, "SCRAM iterations (4096 to 16384)")
	var login brokerLogin
	login.flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	mechanisms := strings.Split(*mechs, ",")
	var name string
	switch verb {
	case "add", "passwd", "remove":
		if fs.NArg() != 1 {
			return fmt.Errorf("user %s: want one user name", verb)
		}
		name = fs.Arg(0)
	case "list":
		if fs.NArg() != 0 {
			return usage
		}
	default:
		return usage
	}

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, err := openUserStore(*dataDir, *bootstrap, login)
	if err != nil {
		return err
	}
	defer store.close()
	users, err := store.users(ctx)
	if err != nil {
		return err
	}
	switch verb {
	case "list":
		names := make([]string, 0, len(users))
		for n := range users {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stdout, "%s\t%s\n", n, strings.Join(users[n], ","))
		}
		return nil
	case "remove":
		if _, ok := users[name]; !ok {
			return fmt.Errorf("user %q: no such user", name)
		}
		return store.remove(ctx, name, users[name])
	}
	if _, ok := users[name]; ok && verb == "add" {
		return fmt.Errorf("user %q exists; use passwd to change the password", name)
	} else if !ok && verb == "passwd" {
		return fmt.Errorf("user %q: no such user; use add", name)
	}
	password, err := readPassword(*passwordFile, stdin)
	if err != nil {
		return err
	}
	return store.set(ctx, name, password, mechanisms, *iterations)
}

// readPassword reads the first line of file, or of stdin.
func readPassword(file string, stdin io.Reader) (string, error) {
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", err
		}
		defer f.Close()
		stdin = f
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty password (give it on stdin or with --password-file)")
	}
	return line, nil
}

func openUserStore(dataDir, bootstrap string, login brokerLogin) (userStore, error) {
	if dataDir != "" {
		cfg := broker.DefaultConfig()
		cfg.DataDir = dataDir
		b, err := broker.Open(cfg, zap.NewNop(), nil, time.Now)
		if err == nil {
			return dirUsers{b}, nil
		}
		if !errors.Is(err, broker.ErrDataDirLocked) {
			return nil, err
		}
		// A broker runs on it: ask that broker.
	}
	opts, err := login.opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(bootstrap))...)
	if err != nil {
		return nil, err
	}
	return wireUsers{kadm.NewClient(cl)}, nil
}

// brokerLogin is how a command logs in to a running broker: as nobody
// (loopback is a superuser by default), or with SASL as a super user when
// authz.loopback.superuser is off, over TLS when given a CA.
type brokerLogin struct {
	user, passwordFile, mechanism, caFile string
}

func (l *brokerLogin) flags(fs *flag.FlagSet) {
	fs.StringVar(&l.user, "sasl-user", "", "log in to the broker as this user (a super user when authz.loopback.superuser is false)")
	fs.StringVar(&l.passwordFile, "sasl-password-file", "", "file whose first line is --sasl-user's password")
	fs.StringVar(&l.mechanism, "sasl-mechanism", "SCRAM-SHA-512", "SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN")
	fs.StringVar(&l.caFile, "tls-ca", "", "PEM CA file: connect with TLS (SSL, SASL_SSL listeners)")
}

func (l brokerLogin) opts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if l.caFile != "" {
		pemCA, err := os.ReadFile(l.caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemCA) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate", l.caFile)
		}
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	if l.user == "" {
		return opts, nil
	}
	if l.passwordFile == "" {
		return nil, errors.New("--sasl-user needs --sasl-password-file")
	}
	pass, err := readPassword(l.passwordFile, nil)
	if err != nil {
		return nil, err
	}
	switch l.mechanism {
	case protocol.MechanismScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: l.user, Pass: pass}.AsSha512Mechanism()))
	case protocol.MechanismScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: l.user, Pass: pass}.AsSha256Mechanism()))
	case protocol.MechanismPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: l.user, Pass: pass}.AsMechanism()))
	default:
		return nil, fmt.Errorf("--sasl-mechanism %q: want SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", l.mechanism)
	}
	return opts, nil
}

// dirUsers changes the data directory's store directly.
type dirUsers struct{ b *broker.Broker }

func (d dirUsers) close() { d.b.Close() }

func (d dirUsers) users(context.Context) (map[string][]string, error) {
	us, err := d.b.ScramUsers()
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for u, ms := range us {
		for m := range ms {
			out[u] = append(out[u], m)
		}
		sort.Strings(out[u])
	}
	return out, nil
}

func (d dirUsers) set(_ context.Context, user, password string, mechanisms []string, iterations int) error {
	for _, m := range mechanisms {
		salt := make([]byte, 32)
		rand.Read(salt)
		stored, server, err := protocol.DeriveScramCredential(m, user, password, salt, iterations)
		if err != nil {
			return err
		}
		if err := d.b.SetScramCredential(user, m, salt, iterations, stored, server); err != nil {
			return err
		}
	}
	return nil
}

func (d dirUsers) remove(_ context.Context, user string, mechanisms []string) error {
	for _, m := range mechanisms {
		if _, err := d.b.DeleteScramCredential(user, m); err != nil {
			return err
		}
	}
	return nil
}

// wireUsers changes a running broker's store through the Kafka protocol.
type wireUsers struct{ adm *kadm.Client }

func (w wireUsers) close() { w.adm.Close() }

func kadmMechanism(m string) (kadm.ScramMechanism, error) {
	switch m {
	case protocol.MechanismScramSHA256:
		return kadm.ScramSha256, nil
	case protocol.MechanismScramSHA512:
		return kadm.ScramSha512, nil
	}
	return 0, fmt.Errorf("mechanism %q: want SCRAM-SHA-256 or SCRAM-SHA-512", m)
}

func (w wireUsers) users(ctx context.Context) (map[string][]string, error) {
	desc, err := w.adm.DescribeUserSCRAMs(ctx)
	if err != nil {
		return nil, fmt.Errorf("describe users: %w", err)
	}
	out := map[string][]string{}
	for u, d := range desc {
		if d.Err != nil {
			return nil, fmt.Errorf("describe user %q: %w", u, d.Err)
		}
		for _, ci := range d.CredInfos {
			out[u] = append(out[u], ci.Mechanism.String())
		}
		sort.Strings(out[u])
	}
	return out, nil
}

func (w wireUsers) set(ctx context.Context, user, password string, mechanisms []string, iterations int) error {
	var ups []kadm.UpsertSCRAM
	for _, m := range mechanisms {
		km, err := kadmMechanism(m)
		if err != nil {
			return err
		}
		ups = append(ups, kadm.UpsertSCRAM{User: user, Mechanism: km, Iterations: int32(iterations), Password: password})
	}
	return w.alter(ctx, nil, ups)
}

func (w wireUsers) remove(ctx context.Context, user string, mechanisms []string) error {
	var dels []kadm.DeleteSCRAM
	for _, m := range mechanisms {
		km, err := kadmMechanism(m)
		if err != nil {
			return err
		}
		dels = append(dels, kadm.DeleteSCRAM{User: user, Mechanism: km})
	}
	return w.alter(ctx, dels, nil)
}

func (w wireUsers) alter(ctx context.Context, dels []kadm.DeleteSCRAM, ups []kadm.UpsertSCRAM) error {
	res, err := w.adm.AlterUserSCRAMs(ctx, dels, ups)
	if err != nil {
		return fmt.Errorf("alter users: %w", err)
	}
	for u, r := range res {
		if r.Err != nil {
			return fmt.Errorf("user %q: %w", u, r.Err)
		}
	}
	return nil
}
