// Package devvault is a development stand-in for the five vendors' APIs, as far as
// keyferry uses them and as ../shared/seeds documents them: Keyway's pull endpoint with
// dotenv content, RFC 7807 errors and rate-limit headers; Keystash's form login with
// one-hour tokens; Knowledge Stack's sign-in, refresh and sign-out; Stash's API-key
// header; Keymint's error bodies. It is a development and test tool, not a vault: data and
// credentials come from a file, nothing is encrypted, and it should listen on loopback.
// Keyway's write endpoints (per-key upsert, the bulk push that replaces an environment,
// the key listing and delete) behave as the open-source Keyway server does.
//
// Each vendor lives under its own path prefix (/keyway, /keystash, /stash,
// /knowledgestack, /keymint) so that one process can stand in for all five. The secrets
// endpoints of the vendors other than Keyway are this tool's own (their public APIs have
// none) and are documented on each handler.
package devvault

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Data is the dev vault's content and credentials, as loaded from a JSON file.
type Data struct {
	// Vaults maps a vault name to its environments, each an object of secrets.
	Vaults map[string]map[string]map[string]string `json:"vaults"`
	// Tokens are the static bearer tokens (Keyway, Keymint, Knowledge Stack API keys).
	Tokens []string `json:"tokens"`
	// APIKeys are the Stash API keys.
	APIKeys []string `json:"apiKeys"`
	// Users maps usernames (e-mails) to passwords for the login vendors.
	Users map[string]string `json:"users"`
	// Forbidden lists "vault" or "vault/environment" that every credential may not read
	// (answered 403).
	Forbidden []string `json:"forbidden"`
	// Scopes limits Keyway tokens to scopes (read:secrets, write:secrets, delete:secrets);
	// a token not listed has every scope.
	Scopes map[string][]string `json:"scopes"`
	// Keys are the API keys of the Keyway and Knowledge Stack key endpoints.
	Keys []Key `json:"keys"`
}

// LoadData reads a Data file.
func LoadData(path string) (*Data, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d := &Data{}
	if err := json.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// Options tune the dev vault's behaviour.
type Options struct {
	// TokenTTL is the lifetime of session tokens (Keystash, Knowledge Stack). Default 1h.
	TokenTTL time.Duration
	// KeywayLimit requests per KeywayWindow (default 100 per 15m); 0 disables the limit.
	KeywayLimit  int
	KeywayWindow time.Duration
	// KeywayOverLimitStatus is the status of an over-limit answer: 500 as Keyway's server
	// is built (default), or 429 as its docs say.
	KeywayOverLimitStatus int
	// KeystashPerSecond limits Keystash requests per second (default 5); 0 disables it.
	KeystashPerSecond int
	// KnowledgeStackCookie makes sign-in answer with a user object and a ks_uat cookie
	// instead of {"access_token"} (the vendor's two documents disagree).
	KnowledgeStackCookie bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// StateFile, when set, receives the whole data after every debug change of a value, so
	// that a dev vault restarted from it (a pod killed in a soak) answers what it answered
	// before, as a real vault would.
	StateFile string
}

// Fault replaces the answers to a vendor's next requests.
type Fault struct {
	Status int               `json:"status"`
	Body   string            `json:"body"`
	Header map[string]string `json:"header"`
	// Delay holds the answer this long (timeouts).
	Delay time.Duration `json:"delay"`
	// Times is how many requests it applies to; 0 means until cleared.
	Times int `json:"times"`
}

// Server is the dev vault. Create it with New; it is an http.Handler.
type Server struct {
	opts Options
	mux  *http.ServeMux

	mu       sync.Mutex
	data     *Data
	sessions map[string]session // session token -> its user and expiry
	counts   map[string]int
	faults   map[string]*Fault
	windows  map[string][]time.Time
	seq      int
	ids      map[string]string // "vault\x00env\x00key" -> Keyway secret id
}

type session struct {
	user    string
	expires time.Time
}

// New returns a dev vault serving data.
func New(data *Data, opts Options) *Server {
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	if opts.KeywayWindow <= 0 {
		opts.KeywayWindow = 15 * time.Minute
	}
	if opts.KeywayOverLimitStatus == 0 {
		opts.KeywayOverLimitStatus = http.StatusInternalServerError
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), data: data, sessions: map[string]session{},
		counts: map[string]int{}, faults: map[string]*Fault{}, windows: map[string][]time.Time{}, ids: map[string]string{}}
	s.routes()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Counts returns how many requests each endpoint served, e.g. "keyway.pull".
func (s *Server) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// Count returns the requests served by one endpoint.
func (s *Server) Count(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[endpoint]
}

// InjectFault makes vendor's next requests answer f; a zero Status clears it.
func (s *Server) InjectFault(vendor string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Status == 0 {
		delete(s.faults, vendor)
		return
	}
	s.faults[vendor] = &f
}

// SetSecret sets one value (tests: a change in the vault).
func (s *Server) SetSecret(vault, env, key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data.Vaults == nil {
		s.data.Vaults = map[string]map[string]map[string]string{}
	}
	if s.data.Vaults[vault] == nil {
		s.data.Vaults[vault] = map[string]map[string]string{}
	}
	if s.data.Vaults[vault][env] == nil {
		s.data.Vaults[vault][env] = map[string]string{}
	}
	s.data.Vaults[vault][env][key] = value
	if err := s.saveLocked(); err != nil {
		log.Printf("devvault: saving the state: %v", err)
	}
}

// saveLocked writes the data to Options.StateFile (when set) by rename, so that a kill
// never leaves half a file.
func (s *Server) saveLocked() error {
	if s.opts.StateFile == "" {
		return nil
	}
	b, err := json.Marshal(s.data)
	if err != nil {
		return err
	}
	tmp := s.opts.StateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.opts.StateFile)
}

// RevokeToken removes a static token or API key.
func (s *Server) RevokeToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data.Tokens = without(s.data.Tokens, tok)
	s.data.APIKeys = without(s.data.APIKeys, tok)
}

// AddToken adds a static token (and Stash API key).
func (s *Server) AddToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data.Tokens = append(s.data.Tokens, tok)
	s.data.APIKeys = append(s.data.APIKeys, tok)
}

// ActiveSessions counts session tokens that are neither expired nor signed out.
func (s *Server) ActiveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, se := range s.sessions {
		if s.opts.Now().Before(se.expires) {
			n++
		}
	}
	return n
}

func without(list []string, v string) []string {
	out := list[:0:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// count records a request and returns the fault to answer with, if any.
func (s *Server) count(vendor, endpoint string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[vendor+"."+endpoint]++
	f := s.faults[vendor]
	if f == nil {
		return nil
	}
	out := *f
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(s.faults, vendor)
		}
	}
	return &out
}

// note counts one more of a detailed key, e.g. "keyway.pull:acme/app/production".
func (s *Server) note(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[key]++
}

// answerFault writes f; it reports whether it did.
func answerFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	if f == nil {
		return false
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return true
		}
	}
	for k, v := range f.Header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(f.Status)
	_, _ = w.Write([]byte(f.Body))
	return true
}

// allow applies a fixed-window rate limit; it returns the remaining count, the window's
// reset time, and whether the request may pass.
func (s *Server) allow(key string, limit int, window time.Duration) (int, time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	kept := s.windows[key][:0]
	for _, t := range s.windows[key] {
		if now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	reset := now.Add(window)
	if len(kept) > 0 {
		reset = kept[0].Add(window)
	}
	if len(kept) >= limit {
		s.windows[key] = kept
		return 0, reset, false
	}
	s.windows[key] = append(kept, now)
	return limit - len(kept) - 1, reset, true
}

func (s *Server) hasToken(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, st := s.keyOf(tok); st != keyUnknown {
		return st == keyActive
	}
	return tok != "" && slices.Contains(s.data.Tokens, tok)
}

func (s *Server) hasAPIKey(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return k != "" && slices.Contains(s.data.APIKeys, k)
}

// validSession reports whether tok is a live session token.
func (s *Server) validSession(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.sessions[tok]
	return ok && s.opts.Now().Before(se.expires)
}

func (s *Server) checkUser(user, pass string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.data.Users[user]
	return ok && p == pass && pass != ""
}

// issue creates a session token: an unsigned-looking JWT whose exp says when it ends.
func (s *Server) issue(user string) (string, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	now := s.opts.Now()
	exp := now.Add(s.opts.TokenTTL)
	tok := fakeJWT(map[string]any{"sub": user, "iat": now.Unix(), "exp": exp.Unix(), "jti": s.seq})
	s.sessions[tok] = session{user: user, expires: exp}
	return tok, exp
}

func (s *Server) revokeSession(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, tok)
}

// secrets returns a copy of an environment's secrets, whether it exists, and whether
// reading it is forbidden.
func (s *Server) secrets(vault, env string) (map[string]string, bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.data.Forbidden {
		if f == vault || f == vault+"/"+env {
			return nil, false, true
		}
	}
	envs, ok := s.data.Vaults[vault]
	if !ok {
		return nil, false, false
	}
	vals, ok := envs[env]
	if !ok {
		return nil, false, false
	}
	out := make(map[string]string, len(vals))
	for k, v := range vals {
		out[k] = v
	}
	return out, true, false
}

func (s *Server) hasVault(vault string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.data.Vaults[vault]
	return ok
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	if contentType == "" {
		contentType = "application/json; charset=utf-8"
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Dotenv renders secrets as Keyway does: sorted keys, values with a space, newline or
// quote wrapped in double quotes with only `"` escaped.
func Dotenv(vals map[string]string) string {
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := vals[k]
		if strings.ContainsAny(v, " \n\"") {
			v = `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
		}
		b.WriteString(k + "=" + v + "\n")
	}
	return b.String()
}

func fakeJWT(claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "." + enc.EncodeToString([]byte("dev-signature"))
}
