package devvault

import (
	"net/http"
)

// keymintRoutes registers the stand-in's endpoints under /keymint/.
func (s *Server) keymintRoutes() {
	s.mux.HandleFunc("GET /keymint/key", s.keymintKey)
}

// Keymint: Bearer at_ tokens, {"message","code"} errors, 429 code 3 with Retry-After 60.

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
