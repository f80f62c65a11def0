package broker

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kerr"
)

func TestUsers(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	salt, stored, server := []byte("salt"), bytes.Repeat([]byte{1}, 64), bytes.Repeat([]byte{2}, 64)
	if err := b.SetScramCredential("alice", "SCRAM-SHA-512", salt, 4096, stored, server); err != nil {
		t.Fatal(err)
	}
	if err := b.SetScramCredential("alice", "SCRAM-SHA-256", salt, 8192, stored[:32], server[:32]); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		user, mech string
		iters      int
		want       *kerr.Error
	}{
		{"", "SCRAM-SHA-512", 4096, kerr.UnacceptableCredential},
		{"bob", "SCRAM-SHA-1", 4096, kerr.UnsupportedSaslMechanism},
		{"bob", "SCRAM-SHA-512", 100, kerr.UnacceptableCredential},
	} {
		if err := b.SetScramCredential(bad.user, bad.mech, salt, bad.iters, stored, server); !errors.Is(err, bad.want) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	// Never the password, only what was given; and it survives a reopen.
	b.Close()
	b = e.open()
	s, it, st, sv, found, err := b.ScramCredential("alice", "SCRAM-SHA-512")
	if err != nil || !found || it != 4096 || !bytes.Equal(s, salt) || !bytes.Equal(st, stored) || !bytes.Equal(sv, server) {
		t.Fatalf("alice: %q %d %x %x %v %v", s, it, st, sv, found, err)
	}
	if _, _, _, _, found, _ := b.ScramCredential("bob", "SCRAM-SHA-512"); found {
		t.Fatal("bob found")
	}
	users, err := b.ScramUsers()
	if err != nil || len(users) != 1 || users["alice"]["SCRAM-SHA-256"] != 8192 || users["alice"]["SCRAM-SHA-512"] != 4096 {
		t.Fatalf("users %v %v", users, err)
	}
	for _, mech := range []string{"SCRAM-SHA-512", "SCRAM-SHA-256"} {
		if found, err := b.DeleteScramCredential("alice", mech); !found || err != nil {
			t.Fatalf("delete %s: %v %v", mech, found, err)
		}
	}
	if found, err := b.DeleteScramCredential("alice", "SCRAM-SHA-256"); found || err != nil {
		t.Fatalf("delete twice: %v %v", found, err)
	}
	if _, closer, err := b.db.Get(userKey("alice")); !errors.Is(err, pebble.ErrNotFound) {
		closer.Close()
		t.Fatal("a user without credentials is still stored")
	}
}
