package broker_test

import (
	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/protocol"
)

// The coordinator is what the listener serves group and producer-id
// requests with.
var _ protocol.Groups = (*broker.GroupCoordinator)(nil)
