package devvault

import (
	"net/http"
	"strconv"
	"time"
)

// keystashRoutes registers the stand-in's endpoints under /keystash/.
func (s *Server) keystashRoutes() {
	s.mux.HandleFunc("POST /keystash/login", s.keystashLogin)
	s.mux.HandleFunc("GET /keystash/api/v1/secrets/view", s.keystashSecrets)
}

// Keystash: form login, 1 hour JWTs, 403 {"error":"..."} for bad credentials,
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
