package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"unicode/utf8"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Users and their SCRAM credentials (issue 12), under user/<name>: for each
// mechanism the salt, iterations, StoredKey and ServerKey of RFC 5802, never
// the password. Broker implements protocol.Credentials with these methods.
const userKeyPrefix = "user/" // then the user name's bytes

// Kafka's bounds on SCRAM iterations.
const (
	minScramIterations = 4096
	maxScramIterations = 16384
)

// userCredential is one mechanism's entry of a user record.
type userCredential struct {
	Salt       []byte `json:"salt"`
	Iterations int    `json:"iterations"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
}

func userKey(name string) []byte { return []byte(userKeyPrefix + name) }

func scramMechanism(m string) bool { return m == "SCRAM-SHA-256" || m == "SCRAM-SHA-512" }

// loadUser reads a user record; nil when there is none.
func (b *Broker) loadUser(name string) (map[string]userCredential, error) {
	v, closer, err := b.db.Get(userKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	var rec map[string]userCredential
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("broker: user %q: %w", name, err)
	}
	return rec, nil
}

// ScramCredential returns user's credential for mechanism.
func (b *Broker) ScramCredential(user, mechanism string) (salt []byte, iterations int, storedKey, serverKey []byte, found bool, err error) {
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return nil, 0, nil, nil, false, ErrClosed
	}
	rec, err := b.loadUser(user)
	if err != nil {
		return nil, 0, nil, nil, false, err
	}
	c, ok := rec[mechanism]
	return c.Salt, c.Iterations, c.StoredKey, c.ServerKey, ok, nil
}

// SetScramCredential stores user's credential for mechanism, replacing one
// there was. A bad name, mechanism or iteration count is
// kerr.UnacceptableCredential.
func (b *Broker) SetScramCredential(user, mechanism string, salt []byte, iterations int, storedKey, serverKey []byte) error {
	switch {
	case user == "" || !utf8.ValidString(user) || len(user) > 255:
		return fmt.Errorf("%w: user name must be 1 to 255 bytes of UTF-8", kerr.UnacceptableCredential)
	case !scramMechanism(mechanism):
		return fmt.Errorf("%w: mechanism %q", kerr.UnsupportedSaslMechanism, mechanism)
	case iterations < minScramIterations || iterations > maxScramIterations:
		return fmt.Errorf("%w: iterations %d not in [%d, %d]", kerr.UnacceptableCredential, iterations, minScramIterations, maxScramIterations)
	case len(salt) == 0 || len(storedKey) == 0 || len(serverKey) == 0:
		return fmt.Errorf("%w: empty salt or key", kerr.UnacceptableCredential)
	}
	return b.updateUser(user, func(rec map[string]userCredential) bool {
		rec[mechanism] = userCredential{Salt: salt, Iterations: iterations, StoredKey: storedKey, ServerKey: serverKey}
		return true
	})
}

// DeleteScramCredential removes user's credential for mechanism; the user
// goes with its last credential.
func (b *Broker) DeleteScramCredential(user, mechanism string) (found bool, err error) {
	err = b.updateUser(user, func(rec map[string]userCredential) bool {
		_, found = rec[mechanism]
		delete(rec, mechanism)
		return found
	})
	return found, err
}

// updateUser changes a user record under adminMu (writes are rare and
// synced); change reports whether to write.
func (b *Broker) updateUser(user string, change func(map[string]userCredential) bool) error {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	rec, err := b.loadUser(user)
	if err != nil {
		return err
	}
	if rec == nil {
		rec = map[string]userCredential{}
	}
	if !change(rec) {
		return nil
	}
	if len(rec) == 0 {
		if err := b.disk.refuseMeta(); err != nil {
			return err
		}
		return b.db.Delete(userKey(user), pebble.Sync)
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return setMeta(b.disk, b.db, userKey(user), v)
}

// ScramUsers lists every user with the iterations of each mechanism.
func (b *Broker) ScramUsers() (map[string]map[string]int, error) {
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	it, err := b.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(userKeyPrefix),
		UpperBound: keyPrefixEnd([]byte(userKeyPrefix)),
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]map[string]int{}
	for it.First(); it.Valid(); it.Next() {
		name := string(it.Key()[len(userKeyPrefix):])
		var rec map[string]userCredential
		if err := json.Unmarshal(it.Value(), &rec); err != nil {
			return nil, fmt.Errorf("broker: user %q: %w", name, err)
		}
		ms := map[string]int{}
		for m, c := range rec {
			ms[m] = c.Iterations
		}
		out[name] = ms
	}
	return out, it.Error()
}

// UserNames lists the users, sorted.
func (b *Broker) UserNames() ([]string, error) {
	us, err := b.ScramUsers()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(us))
	for n := range us {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}
