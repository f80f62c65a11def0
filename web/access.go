package web

import (
	"context"
	"crypto/sha256"
	"net/http"
	"sync"
	"time"
)

// Access decides whether user may see the page r asks for; user is the
// HTTP basic authentication user, checked by the server's PasswordCheck
// first, and "" for an anonymous request. A route with a nil Access is
// public.
type Access func(r *http.Request, user string) bool

// PasswordCheck verifies HTTP basic credentials (the Kafka users' own, so
// one password serves both); nil error means they are right.
type PasswordCheck func(user, password string) error

// Passwords are checked by salting and iterating, which costs milliseconds
// of CPU on purpose: at most this many run at once, and a right answer is
// remembered for passwordMemory so a page's requests do not each pay it.
const (
	maxPasswordChecks = 2
	passwordMemory    = 5 * time.Minute
	maxRemembered     = 1024
)

// gate is what answers 401 and 403 in front of routes with an Access.
type gate struct {
	check PasswordCheck
	slots chan struct{}

	mu   sync.Mutex
	good map[[sha256.Size]byte]time.Time // sha256(user NUL password) -> when checked
}

func newGate() *gate {
	return &gate{slots: make(chan struct{}, maxPasswordChecks), good: map[[sha256.Size]byte]time.Time{}}
}

// authenticated returns the request's user ("" when it gives none) and
// whether its credentials, if any, are right.
func (g *gate) authenticated(r *http.Request) (string, bool) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", true
	}
	if g.check == nil || user == "" {
		return user, false
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	now := time.Now()
	g.mu.Lock()
	at, seen := g.good[key]
	g.mu.Unlock()
	if seen && now.Sub(at) < passwordMemory {
		return user, true
	}
	select {
	case g.slots <- struct{}{}:
	case <-r.Context().Done():
		return user, false
	}
	err := g.check(user, pass)
	<-g.slots
	if err != nil {
		return user, false
	}
	g.mu.Lock()
	if len(g.good) >= maxRemembered {
		clear(g.good)
	}
	g.good[key] = now
	g.mu.Unlock()
	return user, true
}

// guard wraps h: 401 (asking for basic credentials) for wrong credentials
// or an anonymous request that access refuses, 403 for a user it refuses.
func (g *gate) guard(access Access, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, ok := g.authenticated(r)
		switch {
		case !ok || (user == "" && !access(r, "")):
			w.Header().Set("WWW-Authenticate", `Basic realm="ztfbroker", charset="UTF-8"`)
			http.Error(w, "401 unauthorized: this page needs a ztfbroker user", http.StatusUnauthorized)
		case user != "" && !access(r, user):
			http.Error(w, "403 forbidden: user "+user+" may not read this", http.StatusForbidden)
		default:
			if user != "" {
				r = r.WithContext(context.WithValue(r.Context(), userKey{}, user))
			}
			h.ServeHTTP(w, r)
		}
	})
}

type userKey struct{}

// RequestUser is the user a guarded route's request authenticated as; ""
// for an anonymous request or a route without an Access.
func RequestUser(r *http.Request) string {
	u, _ := r.Context().Value(userKey{}).(string)
	return u
}

// Anyone is an Access that lets every request through, anonymous ones
// too, and still checks the credentials a request gives: for a route
// that decides per item what a user may see (RequestUser).
func Anyone(*http.Request, string) bool { return true }

// SetPasswordCheck installs how basic credentials are verified; without
// one, every request with credentials is refused. Call before serving.
func (s *Server) SetPasswordCheck(check PasswordCheck) { s.gate.check = check }

// OnlyUsers is an Access for the named users (none: everyone).
func OnlyUsers(users []string) Access {
	if len(users) == 0 {
		return nil
	}
	allowed := map[string]bool{}
	for _, u := range users {
		allowed[u] = true
	}
	return func(_ *http.Request, user string) bool { return allowed[user] }
}
