package devvault

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// keywayRoutes registers the stand-in's endpoints under /keyway/.
func (s *Server) keywayRoutes() {
	s.mux.HandleFunc("GET /keyway/v1/secrets/pull", s.keywayPull)
	s.mux.HandleFunc("GET /keyway/v1/vaults", s.keywayVaults)
	s.mux.HandleFunc("GET /keyway/v1/vaults/{owner}/{repo}/environments", s.keywayEnvironments)
	s.keywayWriteRoutes()
	s.keywayKeyRoutes()
}

// Keyway: RFC 7807 errors, rate-limit headers on every answer, and (as the server is
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
		if s.tokenKeyState(tok) == keyExpired {
			detail = "API key has expired"
		}
		problem(w, http.StatusUnauthorized, "unauthorized", "Unauthorized", detail)
		return false
	}
	return true
}

// keywayScope answers 403 unless the token has scope (tokens not in Data.Scopes have all).
func (s *Server) keywayScope(w http.ResponseWriter, r *http.Request, scope string) bool {
	if !s.hasScope(bearer(r), scope) {
		problem(w, http.StatusForbidden, "forbidden", "Forbidden", "API key missing required scope(s): "+scope)
		return false
	}
	return true
}

func (s *Server) keywayPull(w http.ResponseWriter, r *http.Request) {
	if !s.keywayGate(w, r, "pull") || !s.keywayScope(w, r, "read:secrets") {
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
	if !s.keywayGate(w, r, "vaults") || !s.keywayScope(w, r, "read:secrets") {
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
