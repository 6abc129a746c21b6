package devvault

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
)

// standIns are the vendors the dev vault stands in for, each in its vendor_<name>.go
// beside the vendor's preset in internal/vault/vendor_<name>.go: one line each.
var standIns = map[string]func(*Server){
	"keyway":         (*Server).keywayRoutes,
	"keystash":       (*Server).keystashRoutes,
	"stash":          (*Server).stashRoutes,
	"knowledgestack": (*Server).knowledgeStackRoutes,
	"keymint":        (*Server).keymintRoutes,
}

// StandIns names the vendors the dev vault stands in for, sorted.
func StandIns() []string { return slices.Sorted(maps.Keys(standIns)) }

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

	for _, name := range StandIns() {
		standIns[name](s)
	}
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
