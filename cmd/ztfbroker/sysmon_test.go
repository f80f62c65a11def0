package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestServeKeepsSysmonAwake: `ztfbroker serve` runs with GODEBUG's
// schedtrace set (sysmon.go), keeping what GODEBUG already held, and leaves
// a GODEBUG that sets schedtrace itself as it is. The process keeps the pid
// it was started with.
func TestServeKeepsSysmonAwake(t *testing.T) {
	for _, tc := range []struct {
		godebug string // "-": unset
		want    string
	}{
		{"-", sysmonSchedtrace},
		{"", sysmonSchedtrace},
		{"madvdontneed=1", "madvdontneed=1," + sysmonSchedtrace},
		{"schedtrace=0", "schedtrace=0"},
		{"madvdontneed=1,schedtrace=0", "madvdontneed=1,schedtrace=0"},
	} {
		t.Run(strings.NewReplacer(",", "+", "=", "-").Replace(tc.godebug), func(t *testing.T) {
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GODEBUG=") {
					env = append(env, kv)
				}
			}
			if tc.godebug != "-" {
				env = append(env, "GODEBUG="+tc.godebug)
			}
			b := startBrokerEnv(t, env, "")
			environ, err := os.ReadFile("/proc/" + strconv.Itoa(b.cmd.Process.Pid) + "/environ")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, kv := range strings.Split(string(environ), "\x00") {
				if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
					got = append(got, v)
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("GODEBUG of the running broker: %q, want [%q]", got, tc.want)
			}
		})
	}
}
