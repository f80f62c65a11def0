package protocol

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupAnswer passes on what Groups answered. Groups builds the whole
// response at the request's version; a nil one is a coordinator bug, and
// the connection is closed rather than sent a made-up answer.
func groupAnswer[R any, P interface {
	*R
	kmsg.Response
}](resp P) (kmsg.Response, error) {
	if resp == nil {
		return nil, errors.New("group coordinator returned no response")
	}
	return resp, nil
}
