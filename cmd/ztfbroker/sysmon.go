package main

import (
	"os"
	"strings"
	"syscall"
)

// The Go runtime's sysmon thread sleeps deeply whenever every P is idle,
// and the next system call wakes it and resets its poll to every 20 us,
// as a bet that a P blocked in a syscall will need retaking soon. A broker
// serving fetches is idle between a client's fetches hundreds or thousands
// of times a second (one kcat reading at 2.7 GB/s asks for 1 MiB every
// 0.4 ms), so sysmon kept waking and polling: 14% of the broker's CPU in
// a perf profile of one kcat consumer, with futex wake-ups and context
// switches behind it. The runtime skips the deep sleep only when GODEBUG
// sets schedtrace; with the longest period it allows, sysmon backs off to
// one poll per 10 ms while nothing needs retaking and never prints (but
// once at start on a host up for more than 24.8 days: the period counts
// from boot). Idle, that costs about 0.25% of a core more. Measured side
// by side (BenchmarkConsumeSysmon, 720 MB read by kcat): broker CPU per GB
// read fell by 7-12% (0.26 against 0.30 s/GB for one consumer, 0.19
// against 0.21 for 8), and by 15-20% with one broker alone on the machine.
const sysmonSchedtrace = "schedtrace=2147483647"

// keepSysmonAwake re-executes this binary with sysmonSchedtrace added to
// GODEBUG, unless GODEBUG already sets schedtrace (schedtrace=0 keeps the
// runtime's default). It returns only when it does not re-execute, or the
// exec failed: then the process goes on as it is. The process keeps its pid.
func keepSysmonAwake() {
	godebug, set := os.LookupEnv("GODEBUG")
	for _, kv := range strings.Split(godebug, ",") {
		if k, _, _ := strings.Cut(kv, "="); strings.TrimSpace(k) == "schedtrace" {
			return
		}
	}
	if set && godebug != "" {
		godebug += ","
	}
	env := []string{"GODEBUG=" + godebug + sysmonSchedtrace}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	// /proc/self/exe is this binary even when its path was replaced since.
	_ = syscall.Exec("/proc/self/exe", os.Args, env)
}
