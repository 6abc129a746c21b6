package devvault

import (
	"encoding/json"
	"net/http"
	"time"
)

// knowledgeStackRoutes registers the stand-in's endpoints under /knowledgestack/.
func (s *Server) knowledgeStackRoutes() {
	s.mux.HandleFunc("POST /knowledgestack/v1/auth/pw/signin", s.ksSignin)
	s.mux.HandleFunc("POST /knowledgestack/v1/auth/uat", s.ksRefresh)
	s.mux.HandleFunc("POST /knowledgestack/v1/auth/signout", s.ksSignout)
	s.mux.HandleFunc("GET /knowledgestack/v1/secrets", s.ksSecrets)
	s.knowledgeStackKeyRoutes()
}

// Knowledge Stack: JSON sign-in (access_token, or a ks_uat cookie), refresh, sign-out,
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
