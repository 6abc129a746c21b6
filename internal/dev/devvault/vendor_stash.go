package devvault

import (
	"encoding/json"
	"net/http"
)

// stashRoutes registers the stand-in's endpoints under /stash/.
func (s *Server) stashRoutes() {
	s.mux.HandleFunc("POST /stash/api/v1/sdk/config", s.stashConfig)
}

// Stash: X-Stash-Api-Key; POST with a JSON body carrying shop_handle; no error bodies.

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
