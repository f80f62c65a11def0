package protocol

// Server is the Kafka listener (placeholder until the listener lands).
type Server struct{}

// conn is one client connection (placeholder until the listener lands).
type conn struct{}
