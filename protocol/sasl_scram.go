package protocol

import (
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/xdg-go/scram"
)

// scramExchange is the server side of RFC 5802 through xdg-go/scram, with
// one allowance for librdkafka before 2.6.1 (Debian 12's kcat and
// python3-confluent-kafka, 2.0.2): its client-final-message carries the
// client nonce followed by the server's full nonce, which already begins
// with the client nonce (librdkafka PR 4895), and its proof signs that very
// message. The library compares the nonce strictly, and rewriting the nonce
// before handing the message over would change the AuthMessage the proof
// signs, so the repeated form is verified here with the library's stored
// keys and the same HMAC steps. It still requires the server's full nonce
// at the end (the check CVE-2024-56128 added to Kafka): only the exact
// repetition clientNonce + serverNonce is accepted, nothing else.
type scramExchange struct {
	mechanism string
	hash      scram.HashGeneratorFcn
	conv      *scram.ServerConversation
	stored    scram.StoredCredentials
	found     bool

	first       bool
	clientBare  string // client-first-message-bare
	serverFirst string
	clientNonce string
	nonce       string // the server's full nonce: client's + ours
}

func newScramExchange(mechanism string, h scram.HashGeneratorFcn, creds Credentials) (*scramExchange, error) {
	x := &scramExchange{mechanism: mechanism, hash: h, first: true}
	srv, err := h.NewServer(func(user string) (scram.StoredCredentials, error) {
		salt, iters, stored, server, found, err := creds.ScramCredential(user, mechanism)
		if err != nil {
			return scram.StoredCredentials{}, err
		}
		if !found {
			return scram.StoredCredentials{}, errAuthFailed
		}
		x.stored = scram.StoredCredentials{
			KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters},
			StoredKey:  stored, ServerKey: server,
		}
		x.found = true
		return x.stored, nil
	})
	if err != nil {
		return nil, err
	}
	x.conv = srv.NewConversation()
	return x, nil
}

func (x *scramExchange) user() string { return x.conv.Username() }
func (x *scramExchange) known() bool  { return x.found }

func (x *scramExchange) step(token []byte) ([]byte, bool, error) {
	msg := string(token)
	if x.first {
		x.first = false
		bare, cnonce, err := parseClientFirst(msg)
		if err != nil {
			return nil, false, err
		}
		reply, err := x.conv.Step(msg)
		if err != nil {
			return nil, false, fmt.Errorf("%w (%v)", errAuthFailed, err)
		}
		nonce, ok := strings.CutPrefix(reply, "r=")
		nonce, _, _ = strings.Cut(nonce, ",")
		if !ok || !strings.HasPrefix(nonce, cnonce) || len(nonce) == len(cnonce) {
			return nil, false, errors.New("scram: unexpected server-first-message")
		}
		x.clientBare, x.serverFirst, x.clientNonce, x.nonce = bare, reply, cnonce, nonce
		return []byte(reply), false, nil
	}
	if x.conv.Done() || x.nonce == "" {
		return nil, false, errors.New("scram: exchange already over")
	}
	got, c2wop, proof, err := parseClientFinal(msg)
	if err != nil {
		return nil, false, err
	}
	if got == x.clientNonce+x.nonce {
		reply, err := x.verifyRepeated(c2wop, proof)
		return reply, err == nil, err
	}
	reply, err := x.conv.Step(msg)
	if err != nil || !x.conv.Valid() {
		return nil, false, fmt.Errorf("%w (%v)", errAuthFailed, err)
	}
	return []byte(reply), true, nil
}

// verifyRepeated checks a proof over a client-final-message whose nonce is
// the librdkafka < 2.6.1 repetition, as RFC 5802 section 3 computes it.
func (x *scramExchange) verifyRepeated(c2wop string, proof []byte) ([]byte, error) {
	if !x.found {
		return nil, errAuthFailed
	}
	// The channel binding must be the gs2 header without binding ("n,,"
	// or "n,a=...,"); binding itself is not offered.
	cb, _, _ := strings.Cut(c2wop, ",")
	hdr, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(cb, "c="))
	if err != nil || !strings.HasPrefix(cb, "c=") || !strings.HasPrefix(string(hdr), "n,") {
		return nil, errAuthFailed
	}
	auth := []byte(x.clientBare + "," + x.serverFirst + "," + c2wop)
	sig := hmacOf(x.hash, x.stored.StoredKey, auth)
	if len(proof) != len(sig) {
		return nil, errAuthFailed
	}
	clientKey := make([]byte, len(sig))
	for i := range sig {
		clientKey[i] = proof[i] ^ sig[i]
	}
	h := x.hash()
	h.Write(clientKey)
	if !hmac.Equal(h.Sum(nil), x.stored.StoredKey) {
		return nil, errAuthFailed
	}
	return []byte("v=" + base64.StdEncoding.EncodeToString(hmacOf(x.hash, x.stored.ServerKey, auth))), nil
}

func hmacOf(h scram.HashGeneratorFcn, key, data []byte) []byte {
	m := hmac.New(h, key)
	m.Write(data)
	return m.Sum(nil)
}

// parseClientFirst returns the client-first-message-bare and the client
// nonce; the library parses the rest.
func parseClientFirst(msg string) (bare, nonce string, err error) {
	// gs2-header is flag "," [authzid] ","; the bare message follows.
	i := strings.IndexByte(msg, ',')
	if i < 0 {
		return "", "", errors.New("scram: malformed client-first-message")
	}
	j := strings.IndexByte(msg[i+1:], ',')
	if j < 0 {
		return "", "", errors.New("scram: malformed client-first-message")
	}
	bare = msg[i+1+j+1:]
	for f := range strings.SplitSeq(bare, ",") {
		if n, ok := strings.CutPrefix(f, "r="); ok && n != "" {
			return bare, n, nil
		}
	}
	return "", "", errors.New("scram: client-first-message without nonce")
}

// parseClientFinal returns the nonce, the message without proof and the
// proof of a client-final-message: c=..,r=..[,ext],p=...
func parseClientFinal(msg string) (nonce, withoutProof string, proof []byte, err error) {
	fields := strings.Split(msg, ",")
	if len(fields) < 3 || !strings.HasPrefix(fields[0], "c=") || !strings.HasPrefix(fields[1], "r=") {
		return "", "", nil, errors.New("scram: malformed client-final-message")
	}
	last := fields[len(fields)-1]
	p, ok := strings.CutPrefix(last, "p=")
	if !ok {
		return "", "", nil, errors.New("scram: client-final-message without proof")
	}
	proof, err = base64.StdEncoding.DecodeString(p)
	if err != nil {
		return "", "", nil, errors.New("scram: malformed proof")
	}
	return fields[1][2:], msg[:strings.LastIndex(msg, ",")], proof, nil
}
