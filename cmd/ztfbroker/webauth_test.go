package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPartnershipArchiveNeedsAUser: the partnership archive answers 401
// without credentials (and with wrong ones), 403 to a user the ACLs do not
// let READ the partnership's topics, 200 to one they do; the public archive
// stays open; /metrics can be kept to named users. The users and ACLs are
// the Kafka ones, made with `ztfbroker user` and `ztfbroker acl`.
func TestPartnershipArchiveNeedsAUser(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	partnership := filepath.Join(dataDir, "archive", "partnership")
	if err := os.MkdirAll(partnership, 0o755); err != nil {
		t.Fatal(err)
	}
	tarball := "ztf_partnership_20180725.tar.gz"
	if err := os.WriteFile(filepath.Join(partnership, tarball), []byte("partners only"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, dataDir, "--archive=false", "--set", "http.metrics.users=alice")
	for user, pass := range map[string]string{"alice": "alice-secret", "bob": "bob-secret"} {
		pw := filepath.Join(dir, user+".pw")
		os.WriteFile(pw, []byte(pass+"\n"), 0o600)
		if out, err := runBinary(t, "user", "add", "--bootstrap", b.Kafka, "--password-file", pw, user); err != nil {
			t.Fatalf("ztfbroker user add %s: %v\n%s", user, err, out)
		}
	}
	if out, err := runBinary(t, "acl", "add", "--bootstrap", b.Kafka, "--principal", "User:alice",
		"--operation", "READ", "--topic", "ztf_", "--prefixed"); err != nil {
		t.Fatalf("ztfbroker acl add: %v\n%s", err, out)
	}

	get := func(path, user, pass string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+b.HTTP+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	for _, tc := range []struct {
		path, user, pass string
		code             int
		body             string
	}{
		{"/alerts/public/", "", "", 200, ""},
		{"/alerts/partnership/", "", "", 401, ""},
		{"/alerts/partnership/" + tarball, "", "", 401, ""},
		{"/alerts/partnership/", "alice", "wrong", 401, ""},
		{"/alerts/partnership/", "nobody", "alice-secret", 401, ""},
		{"/alerts/partnership/", "bob", "bob-secret", 403, ""},
		{"/alerts/partnership/", "alice", "alice-secret", 200, tarball},
		{"/alerts/partnership/" + tarball, "alice", "alice-secret", 200, "partners only"},
		{"/metrics", "", "", 401, ""},
		{"/metrics", "bob", "bob-secret", 403, ""},
		{"/metrics", "alice", "alice-secret", 200, "ztfbroker_"},
		{"/healthz", "", "", 200, "ok"},
	} {
		code, body, hdr := get(tc.path, tc.user, tc.pass)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s as %q: %d %q, want %d with %q", tc.path, tc.user, code, body, tc.code, tc.body)
		}
		if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("GET %s: 401 without a Basic challenge: %v", tc.path, hdr)
		}
	}
}

// TestWebOverTLS: with http.tls.cert and http.tls.key the pages are HTTPS,
// so a partner's basic-auth password never crosses the network in clear.
func TestWebOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "web-ca")
	certFile, keyFile := filepath.Join(dir, "web.pem"), filepath.Join(dir, "web.key")
	ca.issue(t, certFile, keyFile)
	dataDir := filepath.Join(dir, "data")
	os.MkdirAll(filepath.Join(dataDir, "archive", "partnership"), 0o755)
	b := startBroker(t, dataDir, "--archive=false", "--set", "http.tls.cert="+certFile, "--set", "http.tls.key="+keyFile)
	pw := filepath.Join(dir, "alice.pw")
	os.WriteFile(pw, []byte("alice-secret\n"), 0o600)
	if out, err := runBinary(t, "user", "add", "--bootstrap", b.Kafka, "--password-file", pw, "alice"); err != nil {
		t.Fatalf("ztfbroker user add: %v\n%s", err, out)
	}
	if out, err := runBinary(t, "acl", "add", "--bootstrap", b.Kafka, "--principal", "User:alice",
		"--operation", "READ", "--topic", "ztf_", "--prefixed"); err != nil {
		t.Fatalf("ztfbroker acl add: %v\n%s", err, out)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}}}
	req, _ := http.NewRequest("GET", "https://"+b.HTTP+"/alerts/partnership/", nil)
	req.SetBasicAuth("alice", "alice-secret")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("HTTPS with the test CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("partnership listing over HTTPS as alice: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	if resp, err := http.Get("http://" + b.HTTP + "/healthz"); err == nil && resp.StatusCode == 200 {
		resp.Body.Close()
		t.Fatal("plain HTTP answered on the HTTPS listener")
	}
}
