package protocol

import "syscall"

func init() {
	niceFlooder = func() { syscall.Setpriority(syscall.PRIO_PROCESS, 0, 19) }
}
