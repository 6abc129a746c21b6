package devvault

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

func (s *Server) routes() {
	s.mux.HandleFunc("GET /debug/counts", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, "", s.Counts())
	})
	s.mux.HandleFunc("POST /debug/fault/{vendor}", debugJSON(func(r *http.Request, f Fault) {
		s.InjectFault(r.PathValue("vendor"), f)
	}))
	// Body: {"environment": "...", "key": "...", "value": "..."}
	s.mux.HandleFunc("PUT /debug/secrets/{vault...}", debugJSON(func(r *http.Request, v struct{ Environment, Key, Value string }) {
		s.SetSecret(r.PathValue("vault"), v.Environment, v.Key, v.Value)
	}))
	s.mux.HandleFunc("POST /debug/revoke", debugJSON(func(_ *http.Request, v struct{ Token string }) { s.RevokeToken(v.Token) }))
	s.mux.HandleFunc("POST /debug/token", debugJSON(func(_ *http.Request, v struct{ Token string }) { s.AddToken(v.Token) }))

	// Keyway.
	s.mux.HandleFunc("GET /keyway/v1/secrets/pull", s.keywayPull)
	s.mux.HandleFunc("GET /keyway/v1/vaults", s.keywayVaults)
	s.mux.HandleFunc("GET /keyway/v1/vaults/{owner}/{repo}/environments", s.keywayEnvironments)
	s.keywayWriteRoutes()

	// Keystash.
	s.mux.HandleFunc("POST /keystash/login", s.keystashLogin)
	s.mux.HandleFunc("GET /keystash/api/v1/secrets/view", s.keystashSecrets)

	// Stash.
	s.mux.HandleFunc("POST /stash/api/v1/sdk/config", s.stashConfig)

	// Knowledge Stack.
	s.mux.HandleFunc("POST /knowledgestack/v1/auth/pw/signin", s.ksSignin)
	s.mux.HandleFunc("POST /knowledgestack/v1/auth/uat", s.ksRefresh)
	s.mux.HandleFunc("POST /knowledgestack/v1/auth/signout", s.ksSignout)
	s.mux.HandleFunc("GET /knowledgestack/v1/secrets", s.ksSecrets)

	// Keymint.
	s.mux.HandleFunc("GET /keymint/key", s.keymintKey)
}

// debugJSON makes a debug endpoint: decode the JSON body, act, answer 204 (400 on a bad body).
func debugJSON[T any](act func(r *http.Request, v T)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var v T
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		act(r, v)
		w.WriteHeader(http.StatusNoContent)
	}
}

// --- Keyway: RFC 7807 errors, rate-limit headers on every answer, and (as the server is
// built) HTTP 500 plus retry-after over the limit.

func problem(w http.ResponseWriter, status int, slug, title, detail string) {
	writeJSON(w, status, "application/problem+json", map[string]any{
		"type": "https://api.keyway.sh/errors/" + slug, "title": title, "status": status,
		"detail": detail, "traceId": "dev-trace",
	})
}

// keywayGate applies the rate limit and auth; it reports whether the request may go on.
func (s *Server) keywayGate(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	if answerFault(w, r, s.count("keyway", endpoint)) {
		return false
	}
	if s.opts.KeywayLimit > 0 {
		remaining, reset, ok := s.allow("keyway", s.opts.KeywayLimit, s.opts.KeywayWindow)
		w.Header().Set("X-RateLimit-Limit", strconv.Itoa(s.opts.KeywayLimit))
		w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
		resetIn := int(math.Ceil(reset.Sub(s.opts.Now()).Seconds()))
		w.Header().Set("X-RateLimit-Reset", strconv.Itoa(resetIn))
		if !ok {
			s.note("keyway.over-limit")
			w.Header().Set("Retry-After", strconv.Itoa(max(resetIn, 1)))
			problem(w, s.opts.KeywayOverLimitStatus, "rate-limited", "Too Many Requests", "Rate limit exceeded, retry later")
			return false
		}
	}
	tok := bearer(r)
	if tok == "" {
		problem(w, http.StatusUnauthorized, "unauthorized", "Unauthorized", "Authentication required")
		return false
	}
	if !s.hasToken(tok) {
		detail := "Invalid or expired token"
		if strings.HasPrefix(tok, "kw_") {
			detail = "Invalid or revoked API key"
		}
		problem(w, http.StatusUnauthorized, "unauthorized", "Unauthorized", detail)
		return false
	}
	return true
}

func (s *Server) keywayPull(w http.ResponseWriter, r *http.Request) {
	if !s.keywayGate(w, r, "pull") {
		return
	}
	repo, env := r.URL.Query().Get("repo"), r.URL.Query().Get("environment")
	if repo == "" || env == "" {
		problem(w, http.StatusBadRequest, "validation-error", "Bad Request", "repo and environment are required")
		return
	}
	s.note("keyway.pull:" + repo + "/" + env)
	vals, ok, forbidden := s.secrets(repo, env)
	switch {
	case forbidden:
		problem(w, http.StatusForbidden, "forbidden", "Forbidden", "You do not have access to this repository")
	case !s.hasVault(repo):
		// A missing vault is a 403 at Keyway.
		problem(w, http.StatusForbidden, "forbidden", "Forbidden", "Vault not found for this repository")
	case !ok || len(vals) == 0:
		problem(w, http.StatusNotFound, "not-found", "Not Found", "No secrets found for environment: "+env)
	default:
		writeJSON(w, http.StatusOK, "", map[string]any{
			"data": map[string]any{"content": Dotenv(vals)},
			"meta": map[string]any{"requestId": fmt.Sprintf("dev-%d", s.Count("keyway.pull"))},
		})
	}
}

func (s *Server) keywayVaults(w http.ResponseWriter, r *http.Request) {
	if !s.keywayGate(w, r, "vaults") {
		return
	}
	s.mu.Lock()
	var items []map[string]any
	for name, envs := range s.data.Vaults {
		owner, repo, _ := strings.Cut(name, "/")
		var names []string
		for e := range envs {
			names = append(names, e)
		}
		items = append(items, map[string]any{"id": name, "repoOwner": owner, "repoName": repo,
			"environments": names, "permission": "read"})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, "", map[string]any{"data": items, "meta": map[string]any{
		"pagination": map[string]any{"total": len(items), "limit": 20, "offset": 0, "hasMore": false}}})
}

func (s *Server) keywayEnvironments(w http.ResponseWriter, r *http.Request) {
	if !s.keywayGate(w, r, "environments") {
		return
	}
	name := r.PathValue("owner") + "/" + r.PathValue("repo")
	s.mu.Lock()
	envs, ok := s.data.Vaults[name]
	var list []map[string]any
	i := 0
	for e := range envs {
		list = append(list, map[string]any{"name": e, "type": "custom", "displayOrder": i})
		i++
	}
	s.mu.Unlock()
	if !ok {
		problem(w, http.StatusForbidden, "forbidden", "Forbidden", "Vault not found for this repository")
		return
	}
	writeJSON(w, http.StatusOK, "", map[string]any{"data": map[string]any{"environments": list}})
}

// --- Keystash: form login, 1 hour JWTs, 403 {"error":"..."} for bad credentials,
// {"error":{"code",...}} otherwise, 5 requests per second with Retry-After: 10.

func (s *Server) keystashGate(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	if answerFault(w, r, s.count("keystash", endpoint)) {
		return false
	}
	if s.opts.KeystashPerSecond > 0 {
		remaining, _, ok := s.allow("keystash", s.opts.KeystashPerSecond, time.Second)
		w.Header().Set("X-RateLimit-Limit", strconv.Itoa(s.opts.KeystashPerSecond))
		w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
		w.Header().Set("X-RateLimit-Reset", "1")
		if !ok {
			w.Header().Set("Retry-After", "10")
			w.WriteHeader(http.StatusTooManyRequests)
			return false
		}
	}
	return true
}

func (s *Server) keystashLogin(w http.ResponseWriter, r *http.Request) {
	if !s.keystashGate(w, r, "login") {
		return
	}
	if err := r.ParseForm(); err != nil || !s.checkUser(r.PostForm.Get("username"), r.PostForm.Get("password")) {
		writeJSON(w, http.StatusForbidden, "", map[string]any{"error": "The authentication credentials were not valid. Please re-authenticate with the correct username and password."})
		return
	}
	tok, _ := s.issue(r.PostForm.Get("username"))
	writeJSON(w, http.StatusOK, "", map[string]any{"authenticated": true, "token": tok, "message": "Authentication successful."})
}

// keystashSecrets (this tool's own endpoint): GET /api/v1/secrets/view?vault=&environment=
// answers the environment as a bare JSON object.
func (s *Server) keystashSecrets(w http.ResponseWriter, r *http.Request) {
	if !s.keystashGate(w, r, "secrets") {
		return
	}
	if !s.validSession(bearer(r)) {
		writeJSON(w, http.StatusUnauthorized, "", map[string]any{"error": map[string]any{
			"code": "Unauthorized", "message": "The token is missing, invalid or expired."}})
		return
	}
	vals, ok, forbidden := s.secrets(r.URL.Query().Get("vault"), r.URL.Query().Get("environment"))
	switch {
	case forbidden:
		writeJSON(w, http.StatusForbidden, "", map[string]any{"error": map[string]any{
			"code": "Forbidden", "message": "You do not have the required permission to access this path.",
			"details": []map[string]string{{"path": r.URL.Path}}}})
	case !ok:
		writeJSON(w, http.StatusNotFound, "", map[string]any{"error": map[string]any{"code": "NotFound", "message": "No such environment."}})
	default:
		writeJSON(w, http.StatusOK, "", vals)
	}
}

// --- Stash: X-Stash-Api-Key; POST with a JSON body carrying shop_handle; no error bodies.

// stashConfig (this tool's own endpoint): POST /api/v1/sdk/config with
// {"shop_handle": vault, "environment": env} answers {"data": {...}}.
func (s *Server) stashConfig(w http.ResponseWriter, r *http.Request) {
	if answerFault(w, r, s.count("stash", "config")) {
		return
	}
	if !s.hasAPIKey(r.Header.Get("X-Stash-Api-Key")) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var body struct {
		ShopHandle  string `json:"shop_handle"`
		Environment string `json:"environment"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil || body.ShopHandle == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	vals, ok, forbidden := s.secrets(body.ShopHandle, body.Environment)
	switch {
	case forbidden:
		w.WriteHeader(http.StatusForbidden)
	case !ok:
		w.WriteHeader(http.StatusNotFound)
	default:
		writeJSON(w, http.StatusOK, "", map[string]any{"data": vals})
	}
}

// --- Knowledge Stack: JSON sign-in (access_token, or a ks_uat cookie), refresh, sign-out,
// FastAPI {"detail": ...} errors.

func (s *Server) ksSignin(w http.ResponseWriter, r *http.Request) {
	if answerFault(w, r, s.count("knowledgestack", "signin")) {
		return
	}
	var body struct{ Email, Password string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, "", map[string]any{"detail": []map[string]any{
			{"loc": []string{"body"}, "msg": "Input should be a valid JSON object", "type": "json_invalid"}}})
		return
	}
	if !s.checkUser(body.Email, body.Password) {
		writeJSON(w, http.StatusUnauthorized, "", map[string]any{"detail": "Invalid email or password"})
		return
	}
	tok, exp := s.issue(body.Email)
	s.answerToken(w, tok, exp, body.Email)
}

func (s *Server) answerToken(w http.ResponseWriter, tok string, exp time.Time, user string) {
	if s.opts.KnowledgeStackCookie {
		http.SetCookie(w, &http.Cookie{Name: "ks_uat", Value: tok, Path: "/", Expires: exp, HttpOnly: true, Secure: true})
		writeJSON(w, http.StatusOK, "", map[string]any{"id": "user_dev", "email": user})
		return
	}
	writeJSON(w, http.StatusOK, "", map[string]any{"access_token": tok, "token_type": "bearer"})
}

// ksToken reads the token from Authorization or the ks_uat cookie.
func ksToken(r *http.Request) string {
	if t := bearer(r); t != "" {
		return t
	}
	if c, err := r.Cookie("ks_uat"); err == nil {
		return c.Value
	}
	return ""
}

func (s *Server) ksAuth(w http.ResponseWriter, r *http.Request) (string, bool) {
	tok := ksToken(r)
	if tok == "" {
		writeJSON(w, http.StatusUnauthorized, "", map[string]any{"detail": "Not authenticated"})
		return "", false
	}
	if !s.validSession(tok) && !s.hasToken(tok) {
		writeJSON(w, http.StatusUnauthorized, "", map[string]any{"detail": "Token is invalid or expired"})
		return "", false
	}
	return tok, true
}

func (s *Server) ksRefresh(w http.ResponseWriter, r *http.Request) {
	if answerFault(w, r, s.count("knowledgestack", "refresh")) {
		return
	}
	old, ok := s.ksAuth(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	user := s.sessions[old].user
	s.mu.Unlock()
	s.revokeSession(old)
	tok, exp := s.issue(user)
	s.answerToken(w, tok, exp, user)
}

func (s *Server) ksSignout(w http.ResponseWriter, r *http.Request) {
	if answerFault(w, r, s.count("knowledgestack", "signout")) {
		return
	}
	tok, ok := s.ksAuth(w, r)
	if !ok {
		return
	}
	s.revokeSession(tok)
	w.WriteHeader(http.StatusNoContent)
}

// ksSecrets (this tool's own endpoint): GET /v1/secrets?tenant=&env= answers
// {"content": "<dotenv>"}.
func (s *Server) ksSecrets(w http.ResponseWriter, r *http.Request) {
	if answerFault(w, r, s.count("knowledgestack", "secrets")) {
		return
	}
	if _, ok := s.ksAuth(w, r); !ok {
		return
	}
	vals, ok, forbidden := s.secrets(r.URL.Query().Get("tenant"), r.URL.Query().Get("env"))
	switch {
	case forbidden:
		writeJSON(w, http.StatusForbidden, "", map[string]any{"detail": "You do not have permission to access this resource"})
	case !ok:
		writeJSON(w, http.StatusNotFound, "", map[string]any{"detail": "Not found"})
	default:
		writeJSON(w, http.StatusOK, "", map[string]any{"content": Dotenv(vals)})
	}
}

// --- Keymint: Bearer at_ tokens, {"message","code"} errors, 429 code 3 with Retry-After 60.

// keymintKey: GET /key?productId=&licenseKey= answers {"data":{"license":{...}},"code":0},
// the license being the environment's values.
func (s *Server) keymintKey(w http.ResponseWriter, r *http.Request) {
	if answerFault(w, r, s.count("keymint", "key")) {
		return
	}
	tok := bearer(r)
	if tok == "" {
		writeJSON(w, http.StatusUnauthorized, "", map[string]any{"message": "Missing Authorization header", "code": 1})
		return
	}
	if !s.hasToken(tok) {
		writeJSON(w, http.StatusUnauthorized, "", map[string]any{"message": "Invalid access token", "code": 1})
		return
	}
	vals, ok, forbidden := s.secrets(r.URL.Query().Get("productId"), r.URL.Query().Get("licenseKey"))
	switch {
	case forbidden:
		writeJSON(w, http.StatusForbidden, "", map[string]any{"message": "Token is missing the licenses:read scope", "code": 2})
	case !ok:
		writeJSON(w, http.StatusNotFound, "", map[string]any{"message": "License not found", "code": 4})
	default:
		writeJSON(w, http.StatusOK, "", map[string]any{"data": map[string]any{"license": vals, "customer": map[string]any{}}, "code": 0})
	}
}

func fakeJWT(claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "." + enc.EncodeToString([]byte("dev-signature"))
}
