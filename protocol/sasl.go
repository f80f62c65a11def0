package protocol

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/xdg-go/scram"
)

// SASL mechanisms served. SCRAM credentials are stored per mechanism (the
// hash differs); PLAIN checks a password against whichever SCRAM credential
// the user has, so no password is ever stored.
const (
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
	MechanismPlain       = "PLAIN"
)

// ScramMechanisms are the SCRAM mechanisms, strongest first.
var ScramMechanisms = []string{MechanismScramSHA512, MechanismScramSHA256}

// Credentials is the user store SASL authenticates against and
// Describe/AlterUserScramCredentials manage. It is declared here, by its
// user; package broker implements it without importing protocol, so it
// speaks basic types only. The server finds it by asserting its Backend.
type Credentials interface {
	// ScramCredential returns user's stored credential for a SCRAM
	// mechanism; found is false when there is none.
	ScramCredential(user, mechanism string) (salt []byte, iterations int, storedKey, serverKey []byte, found bool, err error)
	// SetScramCredential stores (replaces) user's credential for mechanism.
	SetScramCredential(user, mechanism string, salt []byte, iterations int, storedKey, serverKey []byte) error
	// DeleteScramCredential removes it; found is false when there was none.
	DeleteScramCredential(user, mechanism string) (found bool, err error)
	// ScramUsers lists every user with the iterations of each mechanism
	// they have.
	ScramUsers() (map[string]map[string]int, error)
}

// hashFor is the hash of a SCRAM mechanism, nil for any other.
func hashFor(mechanism string) scram.HashGeneratorFcn {
	switch mechanism {
	case MechanismScramSHA256:
		return scram.SHA256
	case MechanismScramSHA512:
		return scram.SHA512
	}
	return nil
}

// minScramIterations is Kafka's lower bound for stored credentials.
const minScramIterations = 4096

// DeriveScramCredential salts and iterates a password for mechanism: what a
// user store keeps instead of the password. The password's UTF-8 bytes are
// used as they are, without SASLprep, as Kafka, librdkafka and kadm do, so
// a credential set over the wire and one set here agree.
func DeriveScramCredential(mechanism, user, password string, salt []byte, iterations int) (storedKey, serverKey []byte, err error) {
	h := hashFor(mechanism)
	if h == nil {
		return nil, nil, fmt.Errorf("protocol: not a SCRAM mechanism: %q", mechanism)
	}
	cl, err := h.NewClientUnprepped(user, password, "")
	if err != nil {
		return nil, nil, err
	}
	sc, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: iterations})
	if err != nil {
		return nil, nil, err
	}
	return sc.StoredKey, sc.ServerKey, nil
}

// errAuthFailed is every failed login as the client sees it: it does not
// tell an unknown user from a wrong password.
var errAuthFailed = errors.New("authentication failed: invalid credentials")

// saslExchange is one mechanism's server side of an authentication.
type saslExchange interface {
	// step answers one client token; done reports success. An error is
	// a failed login.
	step(token []byte) (reply []byte, done bool, err error)
	// user is the user name the client gave, once known.
	user() string
	// known tells whether that user exists in the store.
	known() bool
}

// newExchange starts mechanism's exchange against creds.
func newExchange(mechanism string, creds Credentials) (saslExchange, error) {
	if creds == nil {
		return nil, errors.New("no user store")
	}
	if mechanism == MechanismPlain {
		return &plainExchange{creds: creds}, nil
	}
	h := hashFor(mechanism)
	if h == nil {
		return nil, fmt.Errorf("unsupported mechanism %q", mechanism)
	}
	return newScramExchange(mechanism, h, creds)
}

// startExchange is newExchange for connection c: PLAIN's password
// derivations take the server's slots (loginLimiter.derive), and one that
// waited for its slot while its address spent its allowance is refused
// without a derivation.
func (s *Server) startExchange(c *conn, mechanism string) (saslExchange, error) {
	x, err := newExchange(mechanism, s.creds)
	if p, ok := x.(*plainExchange); ok {
		p.slots = s.logins.derive
		p.allowed = func() bool { return c.l.cfg.Private || s.logins.allowed(c.peerAddr()) }
	}
	return x, err
}

// plainExchange is RFC 4616: one token authzid NUL user NUL password.
type plainExchange struct {
	creds Credentials
	slots chan struct{} // bounds concurrent derivations; nil: unbounded
	// allowed, when set, is asked again once a slot is held.
	allowed func() bool
	name    string
	found   bool
}

func (p *plainExchange) user() string { return p.name }
func (p *plainExchange) known() bool  { return p.found }

func (p *plainExchange) step(token []byte) ([]byte, bool, error) {
	authz, user, pass, err := parsePlain(token)
	if err != nil {
		return nil, false, err
	}
	p.name = user
	if authz != "" && authz != user {
		return nil, false, errors.New("authorization id differs from user")
	}
	if err := checkPassword(p.creds, user, pass, p.slots, p.allowed); err != nil {
		for _, mech := range ScramMechanisms { // for the failed-login count
			if _, _, _, _, found, _ := p.creds.ScramCredential(user, mech); found {
				p.found = true
			}
		}
		return nil, false, err
	}
	p.found = true
	return nil, true, nil
}

// CheckPassword checks a clear password against user's stored SCRAM
// credential (the first mechanism the user has), as PLAIN and HTTP basic
// authentication need: the password is salted and iterated as at
// registration and the keys compared in constant time. A wrong password and
// an unknown user are the same error.
func CheckPassword(creds Credentials, user, pass string) error {
	return checkPassword(creds, user, pass, nil, nil)
}

// checkPassword is CheckPassword with the derivation run in one of slots
// (nil: at once), so that PLAIN logins with wrong passwords for a real
// user, about 1.6 ms of CPU each at 4,096 SHA-512 iterations against 4 us
// for a SCRAM proof, cannot take every core however many addresses send
// them. An unknown user costs no derivation and takes no slot. When allowed
// (nil: always) says no once the slot is held, the login fails without a
// derivation: many connections from one address can be waiting for a slot
// while the first of them spend its failed-login allowance.
func checkPassword(creds Credentials, user, pass string, slots chan struct{}, allowed func() bool) error {
	for _, mech := range ScramMechanisms {
		salt, iters, stored, _, found, err := creds.ScramCredential(user, mech)
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		if slots != nil {
			slots <- struct{}{}
		}
		if allowed != nil && !allowed() {
			if slots != nil {
				<-slots
			}
			return errAuthFailed
		}
		got, _, err := DeriveScramCredential(mech, user, pass, salt, iters)
		if slots != nil {
			<-slots
		}
		if err != nil || subtle.ConstantTimeCompare(got, stored) != 1 {
			return errAuthFailed
		}
		return nil
	}
	return errAuthFailed
}

// parsePlain splits a PLAIN token.
func parsePlain(token []byte) (authz, user, pass string, err error) {
	parts := bytes.Split(token, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return "", "", "", errors.New("malformed PLAIN token")
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), nil
}

// Failed logins are limited per source address with a token bucket: each
// failure takes a token, tokens come back at loginRefill, and an address
// with none left is refused before its credentials are even looked at, so
// a password guesser gets loginBurst tries and then one per loginRefill.
const (
	loginBurst  = 10
	loginRefill = 6 * time.Second
	// loginTrackMax bounds the addresses remembered; full buckets are
	// forgotten first.
	loginTrackMax = 10000
)

type loginLimiter struct {
	mu      sync.Mutex
	now     func() time.Time
	buckets map[netip.Addr]*loginBucket
	failed  *prometheus.CounterVec
	// byUser counts failures per existing user (ztfbroker_user_*, for
	// `ztfbroker user stats`); names not in the store are "unknown", so
	// guessed names cannot grow the series.
	byUser *prometheus.CounterVec
	// derive holds a slot per PLAIN password derivation under way: half
	// the cores, so that a flood of wrong PLAIN passwords leaves the other
	// half to the clients already logged in (checkPassword).
	derive chan struct{}
}

type loginBucket struct {
	tokens float64
	at     time.Time
}

func newLoginLimiter(reg prometheus.Registerer) (*loginLimiter, error) {
	l := &loginLimiter{
		now:     time.Now,
		buckets: make(map[netip.Addr]*loginBucket),
		derive:  make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztfbroker_sasl_failed_logins_total",
			Help: "SASL authentications that failed, by mechanism.",
		}, []string{"mechanism"}),
		byUser: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztfbroker_user_failed_logins_total",
			Help: "SASL authentications that failed, per existing user (unknown: a name not in the store).",
		}, []string{"user"}),
	}
	if err := registerMetrics(reg, l.failed, l.byUser); err != nil {
		return nil, err
	}
	return l, nil
}

// refill brings b up to date; l.mu held.
func (l *loginLimiter) refillLocked(b *loginBucket, now time.Time) {
	b.tokens = min(loginBurst, b.tokens+float64(now.Sub(b.at))/float64(loginRefill))
	b.at = now
}

// allowed tells whether addr may try to log in now.
func (l *loginLimiter) allowed(addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[addr]
	if !ok {
		return true
	}
	l.refillLocked(b, l.now())
	return b.tokens >= 1
}

// fail counts one failed login from addr as user (empty: not a user in
// the store).
func (l *loginLimiter) fail(addr netip.Addr, mechanism, user string) {
	l.failed.WithLabelValues(mechanism).Inc()
	if user == "" {
		user = "unknown"
	}
	l.byUser.WithLabelValues(user).Inc()
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[addr]
	if !ok {
		if len(l.buckets) >= loginTrackMax {
			for a, ob := range l.buckets {
				if l.refillLocked(ob, now); ob.tokens >= loginBurst {
					delete(l.buckets, a)
				}
			}
		}
		b = &loginBucket{tokens: loginBurst, at: now}
		l.buckets[addr] = b
	}
	l.refillLocked(b, now)
	b.tokens = max(0, b.tokens-1)
}

// validMechanisms checks a listener's mechanism list.
func validMechanisms(ms []string) error {
	var errs []error
	for _, m := range ms {
		if m != MechanismPlain && hashFor(m) == nil {
			errs = append(errs, fmt.Errorf("sasl mechanism %q: want one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN", m))
		}
	}
	return errors.Join(errs...)
}

// offers tells whether the listener serves mechanism.
func (lc ListenerConfig) offers(mechanism string) bool {
	return slices.Contains(lc.SASLMechanisms, mechanism)
}
