package devvault

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"time"
)

// Key is an API key the Keyway and Knowledge Stack stand-ins manage through their key
// endpoints (create, list, revoke). An active key authenticates like a static token; a
// revoked or expired one answers 401.
type Key struct {
	// Vendor is keyway or knowledgestack.
	Vendor string `json:"vendor"`
	ID     string `json:"id"`
	Name   string `json:"name"`
	Token  string `json:"token"`
	// Environment is keyway's live or test.
	Environment string `json:"environment,omitempty"`
	// Scopes are keyway's; a keyway key without scopes has none.
	Scopes    []string   `json:"scopes,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// keyState is what a token is, as far as the key registry knows.
type keyState int

const (
	keyUnknown keyState = iota // not a managed key (maybe a static token)
	keyActive
	keyRevoked
	keyExpired
)

// keyOf finds the managed key holding tok; the caller holds s.mu.
func (s *Server) keyOf(tok string) (*Key, keyState) {
	for i := range s.data.Keys {
		k := &s.data.Keys[i]
		if tok == "" || k.Token != tok {
			continue
		}
		switch {
		case k.RevokedAt != nil:
			return k, keyRevoked
		case k.ExpiresAt != nil && !s.opts.Now().Before(*k.ExpiresAt):
			return k, keyExpired
		}
		return k, keyActive
	}
	return nil, keyUnknown
}

// tokenKeyState reports what tok is.
func (s *Server) tokenKeyState(tok string) keyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, st := s.keyOf(tok)
	return st
}

// Keys returns a copy of the managed keys of vendor (tests).
func (s *Server) Keys(vendor string) []Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Key
	for _, k := range s.data.Keys {
		if k.Vendor == vendor {
			out = append(out, k)
		}
	}
	return out
}

// ActiveKeys returns the managed keys of vendor that still authenticate (tests).
func (s *Server) ActiveKeys(vendor string) []Key {
	var out []Key
	for _, k := range s.Keys(vendor) {
		if k.RevokedAt == nil && (k.ExpiresAt == nil || s.opts.Now().Before(*k.ExpiresAt)) {
			out = append(out, k)
		}
	}
	return out
}

// AddKey registers a key made by hand (tests, the data file).
func (s *Server) AddKey(k Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.opts.Now()
	}
	s.data.Keys = append(s.data.Keys, k)
}

// newKey creates and registers a key; the caller holds s.mu.
func (s *Server) newKey(vendor, name, token, id, env string, scopes []string, expiresInDays int) Key {
	now := s.opts.Now().UTC().Truncate(time.Millisecond)
	k := Key{Vendor: vendor, ID: id, Name: name, Token: token, Environment: env, Scopes: scopes, CreatedAt: now}
	if expiresInDays > 0 {
		exp := now.Add(time.Duration(expiresInDays) * 24 * time.Hour)
		k.ExpiresAt = &exp
	}
	s.data.Keys = append(s.data.Keys, k)
	return k
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomBase62 returns n random base62 characters.
func randomBase62(n int) string {
	b := make([]byte, n)
	for i := range b {
		v, err := rand.Int(rand.Reader, big.NewInt(int64(len(base62))))
		if err != nil {
			panic(err)
		}
		b[i] = base62[v.Int64()]
	}
	return string(b)
}

// uuid4 returns a random RFC 4122 version 4 UUID.
func uuid4() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
