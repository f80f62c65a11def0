package broker_test

import (
	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/protocol"
)

// The broker is the listener's Backend, checked here because broker itself
// must not import protocol.
var _ protocol.Backend = (*broker.Broker)(nil)
