package devvault

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Keyway's API-key endpoints as the open-source server implements them
// (packages/backend/src/api/v1/routes/api-keys.routes.ts): all three need the
// admin:api-keys scope (a key without it gets 403 "API key missing required scope(s):
// admin:api-keys"); a key is kw_<environment>_ plus 40 base62 characters, listed by its
// first 16 as prefix; its token is answered once, on creation; a revoked key stays listed
// (isActive false) and answers 401 "Invalid or revoked API key", an expired one "API key
// has expired".

var (
	keywayScopes = []string{"read:secrets", "write:secrets", "delete:secrets", "admin:api-keys"}
	uuidPattern  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

const keywayPrefixLen = 16

func (s *Server) keywayKeyRoutes() {
	s.mux.HandleFunc("POST /keyway/v1/api-keys", s.keywayCreateKey)
	s.mux.HandleFunc("GET /keyway/v1/api-keys", s.keywayListKeys)
	s.mux.HandleFunc("DELETE /keyway/v1/api-keys/{id}", s.keywayRevokeKey)
}

// keywayAdmin is the gate plus the admin:api-keys scope.
func (s *Server) keywayAdmin(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	if !s.keywayGate(w, r, endpoint) {
		return false
	}
	if !s.hasScope(bearer(r), "admin:api-keys") {
		problem(w, http.StatusForbidden, "forbidden", "Forbidden", "API key missing required scope(s): admin:api-keys")
		return false
	}
	return true
}

func keywayKeyJSON(k Key) map[string]any {
	iso := func(t *time.Time) any {
		if t == nil {
			return nil
		}
		return t.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	created := k.CreatedAt
	prefix := k.Token
	if len(prefix) > keywayPrefixLen {
		prefix = prefix[:keywayPrefixLen]
	}
	return map[string]any{
		"id": k.ID, "name": k.Name, "prefix": prefix, "environment": k.Environment, "scopes": k.Scopes,
		"expiresAt": iso(k.ExpiresAt), "createdAt": iso(&created), "revokedAt": iso(k.RevokedAt),
		"revokedReason": map[bool]any{true: "manual", false: nil}[k.RevokedAt != nil],
		"isActive":      k.RevokedAt == nil && (k.ExpiresAt == nil || time.Now().Before(*k.ExpiresAt)),
		"lastUsedAt":    nil, "usageCount": 0,
	}
}

func (s *Server) keywayCreateKey(w http.ResponseWriter, r *http.Request) {
	if !s.keywayAdmin(w, r, "api-keys.create") {
		return
	}
	var body struct {
		Name          string   `json:"name"`
		Environment   string   `json:"environment"`
		Scopes        []string `json:"scopes"`
		ExpiresInDays *float64 `json:"expiresInDays"`
	}
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body)
	valid := err == nil && body.Name != "" && len(body.Name) <= 100 &&
		(body.Environment == "live" || body.Environment == "test") && len(body.Scopes) >= 1 &&
		(body.ExpiresInDays == nil || (*body.ExpiresInDays == float64(int(*body.ExpiresInDays)) && *body.ExpiresInDays > 0 && *body.ExpiresInDays <= 365))
	if !valid {
		problem(w, http.StatusBadRequest, "validation-error", "Bad Request", "Invalid request data")
		return
	}
	for _, sc := range body.Scopes {
		if !slices.Contains(keywayScopes, sc) {
			problem(w, http.StatusBadRequest, "bad-request", "Bad Request", "Invalid scopes. Valid scopes are: "+strings.Join(keywayScopes, ", "))
			return
		}
	}
	days := 0
	if body.ExpiresInDays != nil {
		days = int(*body.ExpiresInDays)
	}
	s.mu.Lock()
	k := s.newKey("keyway", body.Name, "kw_"+body.Environment+"_"+randomBase62(40), uuid4(), body.Environment, body.Scopes, days)
	s.mu.Unlock()
	s.note("keyway.api-keys.created")
	out := keywayKeyJSON(k)
	out["token"] = k.Token
	writeJSON(w, http.StatusOK, "", map[string]any{"data": out, "meta": map[string]any{"requestId": "dev-keys"}})
}

func (s *Server) keywayListKeys(w http.ResponseWriter, r *http.Request) {
	if !s.keywayAdmin(w, r, "api-keys.list") {
		return
	}
	keys := s.Keys("keyway")
	slices.SortStableFunc(keys, func(a, b Key) int { return b.CreatedAt.Compare(a.CreatedAt) })
	list := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		list = append(list, keywayKeyJSON(k))
	}
	writeJSON(w, http.StatusOK, "", map[string]any{"data": map[string]any{"keys": list}, "meta": map[string]any{"requestId": "dev-keys"}})
}

func (s *Server) keywayRevokeKey(w http.ResponseWriter, r *http.Request) {
	if !s.keywayAdmin(w, r, "api-keys.revoke") {
		return
	}
	id := r.PathValue("id")
	if !uuidPattern.MatchString(id) {
		problem(w, http.StatusBadRequest, "validation-error", "Bad Request", "Invalid request data")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.data.Keys {
		k := &s.data.Keys[i]
		if k.Vendor != "keyway" || k.ID != id {
			continue
		}
		if k.RevokedAt != nil {
			problem(w, http.StatusBadRequest, "bad-request", "Bad Request", "API key is already revoked")
			return
		}
		now := s.opts.Now()
		k.RevokedAt = &now
		s.counts["keyway.api-keys.revoked"]++
		w.WriteHeader(http.StatusNoContent)
		return
	}
	problem(w, http.StatusNotFound, "not-found", "Not Found", "API key not found")
}
