package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// `ztfbroker cat` over a SASL_SSL listener of the real binary (loopback is
// no super user there, so only a login gets in), with the TLS and SASL
// flags mirror shares (alertcat.Security): alerts from files in as the
// operator with a password file, and back out as JSON with the password
// from the environment, each record keyed by its alert's objectId. A wrong
// password and flags that do not go together fail with a message that
// says why.
func TestCatBinarySASLSSL(t *testing.T) {
	u := startUsersBroker(t)
	dir := t.TempDir()
	pwFile, badFile := filepath.Join(dir, "operator.pw"), filepath.Join(dir, "wrong.pw")
	os.WriteFile(pwFile, []byte(u.pw["operator"]+"\n"), 0o600)
	os.WriteFile(badFile, []byte("not-the-pw\n"), 0o600)

	const topic = "ztf_20261129_programid1"
	files := catNights[topic]
	var want []string
	for _, f := range files {
		want = append(want, strings.Fields(catExpect(t, f))[0])
	}
	sort.Strings(want)
	login := []string{"--tls-ca", u.ca.pem, "--sasl-user", "operator"}
	args := append(append(append([]string{"cat", "--create", "--sasl-password-file", pwFile}, login...), files...), "kafka://"+u.sasl+"/"+topic)
	if out, err := runBinary(t, args...); err != nil {
		t.Fatalf("cat into SASL_SSL: %v\n%s", err, out)
	}

	out := exec.Command(binary, append(append([]string{"cat", "--eof"}, login...), "kafka://"+u.sasl+"/"+topic, "-")...)
	out.Env = append(os.Environ(), "ZTFBROKER_SASL_PASSWORD="+u.pw["operator"])
	var stderr strings.Builder
	out.Stderr = &stderr
	text, err := out.Output()
	if err != nil {
		t.Fatalf("cat out of SASL_SSL, password from the environment: %v\n%s", err, stderr.String())
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(text)), "\n") {
		var a struct {
			ObjectID string `json:"objectId"`
			Kafka    struct {
				Topic string `json:"topic"`
				Key   []byte `json:"key"`
			} `json:"$kafka"`
		}
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("cat's JSON line %.200q: %v", line, err)
		}
		if a.Kafka.Topic != topic || string(a.Kafka.Key) != a.ObjectID {
			t.Errorf("alert %s read from topic %q with key %q", a.ObjectID, a.Kafka.Topic, a.Kafka.Key)
		}
		got = append(got, a.ObjectID)
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("cat over SASL_SSL reads objectIds %q, want %q", got, want)
	}

	for _, c := range []struct {
		args []string
		say  string
	}{
		{append([]string{"--sasl-password-file", badFile}, login...), "SASL_AUTHENTICATION_FAILED"},
		{login, "--sasl-user needs --sasl-password-file or ZTFBROKER_SASL_PASSWORD"},
		{[]string{"--sasl-mechanism", "PLAIN", "--sasl-user", "operator", "--sasl-password-file", pwFile}, "--sasl-mechanism PLAIN sends the password in clear"},
		{[]string{"--sasl-mechanism", "SCRAM-SHA-1", "--sasl-user", "operator", "--sasl-password-file", pwFile, "--tls"}, `--sasl-mechanism "SCRAM-SHA-1"`},
		{[]string{"--tls-ca", pwFile}, "--tls-ca: no PEM certificate"},
	} {
		args := append(append([]string{"cat", "--eof", "--timeout", "3s"}, c.args...), "kafka://"+u.sasl+"/"+topic, "-")
		out, err := runBinary(t, args...)
		if err == nil || !strings.Contains(out, c.say) {
			t.Errorf("cat %q: %v, want an error saying %q:\n%s", c.args, err, c.say, out)
		}
	}
}
