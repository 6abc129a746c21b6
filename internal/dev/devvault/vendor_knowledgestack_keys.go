package devvault

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Knowledge Stack's API-key endpoints as its authentication page documents them: POST
// /v1/api-keys {"name"} answers {"id","name","key","created_at"} (the key only then), GET
// /v1/api-keys lists keys (a JSON array of {id, name, created_at}: the page shows no shape),
// DELETE /v1/api-keys/<id>; keys never expire. GET /v1/users/me answers who the token is.

func (s *Server) knowledgeStackKeyRoutes() {
	s.mux.HandleFunc("POST /knowledgestack/v1/api-keys", s.ksCreateKey)
	s.mux.HandleFunc("GET /knowledgestack/v1/api-keys", s.ksListKeys)
	s.mux.HandleFunc("DELETE /knowledgestack/v1/api-keys/{id}", s.ksRevokeKey)
	s.mux.HandleFunc("GET /knowledgestack/v1/users/me", s.ksMe)
}

// ksKeyRequest counts the request, answers an injected fault and checks the token; it
// reports whether the request may go on.
func (s *Server) ksKeyRequest(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	if answerFault(w, r, s.count("knowledgestack", endpoint)) {
		return false
	}
	_, ok := s.ksAuth(w, r)
	return ok
}

func ksKeyJSON(k Key) map[string]any {
	return map[string]any{"id": k.ID, "name": k.Name, "created_at": k.CreatedAt.UTC().Format(time.RFC3339)}
}

func (s *Server) ksCreateKey(w http.ResponseWriter, r *http.Request) {
	if !s.ksKeyRequest(w, r, "api-keys.create") {
		return
	}
	var body struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil || strings.TrimSpace(body.Name) == "" {
		writeJSON(w, http.StatusUnprocessableEntity, "", map[string]any{"detail": []map[string]any{
			{"loc": []string{"body", "name"}, "msg": "Field required", "type": "missing"}}})
		return
	}
	s.mu.Lock()
	k := s.newKey("knowledgestack", body.Name, "ks_live_"+randomBase62(40), "key_"+strings.ToLower(randomBase62(26)), "", nil, 0)
	s.mu.Unlock()
	s.note("knowledgestack.api-keys.created")
	out := ksKeyJSON(k)
	out["key"] = k.Token
	writeJSON(w, http.StatusCreated, "", out)
}

func (s *Server) ksListKeys(w http.ResponseWriter, r *http.Request) {
	if !s.ksKeyRequest(w, r, "api-keys.list") {
		return
	}
	list := []map[string]any{}
	for _, k := range s.Keys("knowledgestack") {
		if k.RevokedAt == nil {
			list = append(list, ksKeyJSON(k))
		}
	}
	writeJSON(w, http.StatusOK, "", list)
}

func (s *Server) ksRevokeKey(w http.ResponseWriter, r *http.Request) {
	if !s.ksKeyRequest(w, r, "api-keys.revoke") {
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.data.Keys, func(k Key) bool { return k.Vendor == "knowledgestack" && k.ID == id && k.RevokedAt == nil })
	if i < 0 {
		writeJSON(w, http.StatusNotFound, "", map[string]any{"detail": "Not found"})
		return
	}
	now := s.opts.Now()
	s.data.Keys[i].RevokedAt = &now
	s.counts["knowledgestack.api-keys.revoked"]++
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) ksMe(w http.ResponseWriter, r *http.Request) {
	if !s.ksKeyRequest(w, r, "users.me") {
		return
	}
	writeJSON(w, http.StatusOK, "", map[string]any{"id": "user_dev", "email": "dev@knowledgestack.invalid"})
}
