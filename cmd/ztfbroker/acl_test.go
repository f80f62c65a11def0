package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	publicTopic      = "ztf_20180725_programid1"
	partnershipTopic = "ztf_20180725_programid2"
)

// TestAnonymousSeesOnlyThePublicStream: with authz.loopback.superuser off
// (these tests connect from loopback), an anonymous client reads a
// programid1 topic, is refused a programid2 one with
// TOPIC_AUTHORIZATION_FAILED and does not see it in metadata, and may not
// produce.
func TestAnonymousSeesOnlyThePublicStream(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	// Fill both topics as the local superuser (the packager's place).
	b := startBroker(t, dataDir)
	cl := newClient(t, b.Kafka, kgo.DisableIdempotentWrite())
	for _, topic := range []string{publicTopic, partnershipTopic} {
		for i := 0; i < 3; i++ {
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte("alert")}).FirstErr(); err != nil {
				t.Fatalf("produce to %s as loopback superuser: %v", topic, err)
			}
		}
	}
	cl.Close()
	b.Stop()

	b = startBroker(t, dataDir, "--set", "authz.loopback.superuser=false")
	if got := len(consumeAll(t, b.Kafka, publicTopic)); got != 3 {
		t.Fatalf("anonymous read %d records of %s, want 3", got, publicTopic)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b.Kafka))
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !listed.Has(publicTopic) || listed.Has(partnershipTopic) {
		t.Errorf("anonymous metadata lists %v: want %s and not %s", listed.Names(), publicTopic, partnershipTopic)
	}
	// kadm returns a topic authorization failure as the call's error.
	named, err := adm.Metadata(ctx, partnershipTopic)
	if err == nil {
		err = named.Topics[partnershipTopic].Err
	}
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("metadata of %s by name: %v, want TOPIC_AUTHORIZATION_FAILED", partnershipTopic, err)
	}

	consumer := newClient(t, b.Kafka, kgo.ConsumeTopics(partnershipTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var fetchErr error
	for fetchErr == nil && ctx.Err() == nil {
		fs := consumer.PollFetches(ctx)
		if n := len(fs.Records()); n > 0 {
			t.Fatalf("anonymous consumed %d records of %s", n, partnershipTopic)
		}
		fs.EachError(func(_ string, _ int32, err error) { fetchErr = err })
	}
	if !errors.Is(fetchErr, kerr.TopicAuthorizationFailed) {
		t.Errorf("consuming %s: %v, want TOPIC_AUTHORIZATION_FAILED", partnershipTopic, fetchErr)
	}

	producer := newClient(t, b.Kafka, kgo.DisableIdempotentWrite(), kgo.RecordRetries(1))
	err = producer.ProduceSync(ctx, &kgo.Record{Topic: publicTopic, Value: []byte("forged")}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("anonymous produce to %s: %v, want TOPIC_AUTHORIZATION_FAILED", publicTopic, err)
	}
	if got := len(consumeAll(t, b.Kafka, publicTopic)); got != 3 {
		t.Errorf("%s holds %d records after the refused produce, want 3", publicTopic, got)
	}
}

// TestACLAdminOverTheWire: Kafka's CreateAcls, DescribeAcls and DeleteAcls
// (through kadm, as admin tools send them) and `ztfbroker acl` work for the
// loopback superuser, and the rules survive a restart.
func TestACLAdminOverTheWire(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	b := startBroker(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b.Kafka))

	created, err := adm.CreateACLs(ctx, kadm.NewACLs().Allow("Group:partners").AllowHosts("*").
		Topics("ztf_").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpRead))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range created {
		if c.Err != nil {
			t.Fatalf("create %+v: %v", c, c.Err)
		}
	}
	out, err := runBinary(t, "acl", "add", "--bootstrap", b.Kafka, "--principal", "User:packager",
		"--operation", "WRITE", "--topic", "ztf_", "--prefixed")
	if err != nil {
		t.Fatalf("ztfbroker acl add: %v\n%s", err, out)
	}

	b.Stop()
	b.Restart()
	adm = kadm.NewClient(newClient(t, b.Kafka))

	described, err := adm.DescribeACLs(ctx, kadm.NewACLs().AnyResource().ResourcePatternType(kadm.ACLPatternAny).
		Operations(kadm.OpAny).Allow().AllowHosts().Deny().DenyHosts())
	if err != nil {
		t.Fatal(err)
	}
	var principals []string
	for _, d := range described {
		if d.Err != nil {
			t.Fatalf("describe: %v", d.Err)
		}
		for _, a := range d.Described {
			principals = append(principals, a.Principal+" "+a.Operation.String()+" "+a.Name)
		}
	}
	if len(principals) != 2 {
		t.Fatalf("described %v after restart, want the partners' READ and the packager's WRITE", principals)
	}
	out, err = runBinary(t, "acl", "list", "--bootstrap", b.Kafka)
	if err != nil || !strings.Contains(out, "Group:partners") || !strings.Contains(out, "User:packager") {
		t.Fatalf("ztfbroker acl list: %v\n%s", err, out)
	}

	deleted, err := adm.DeleteACLs(ctx, kadm.NewACLs().Allow("Group:partners").AllowHosts().
		AnyResource().ResourcePatternType(kadm.ACLPatternAny).Operations(kadm.OpAny))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range deleted {
		if d.Err != nil {
			t.Fatalf("delete: %v", d.Err)
		}
		n += len(d.Deleted)
	}
	if n != 1 {
		t.Errorf("deleted %d rules, want the partners' one", n)
	}
	out, err = runBinary(t, "acl", "remove", "--bootstrap", b.Kafka, "--principal", "User:packager")
	if err != nil || !strings.Contains(out, "removed 1") {
		t.Fatalf("ztfbroker acl remove: %v\n%s", err, out)
	}
	out, err = runBinary(t, "acl", "list", "--bootstrap", b.Kafka)
	if err != nil || strings.Contains(out, "User:") {
		t.Fatalf("ztfbroker acl list after removing everything: %v\n%s", err, out)
	}
}
