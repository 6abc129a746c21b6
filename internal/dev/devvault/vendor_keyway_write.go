package devvault

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Keyway's write endpoints, as ../shared/seeds/README.md records them from the open-source
// Keyway server: a per-key upsert with a key rule and a 64 KiB value limit, a bulk push that
// REPLACES the whole environment (keys it does not name go to the trash), a key listing
// with ids, and a delete by id. Scopes: a token listed in Data.Scopes has only those; any
// other token has them all.

var keywayKeyRule = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

const (
	keywayMaxValue    = 64 << 10
	keywayMaxPushKeys = 1000
)

func (s *Server) keywayWriteRoutes() {
	s.mux.HandleFunc("POST /keyway/v1/vaults/{owner}/{repo}/secrets", s.keywayUpsert)
	s.mux.HandleFunc("GET /keyway/v1/vaults/{owner}/{repo}/secrets", s.keywayList)
	s.mux.HandleFunc("DELETE /keyway/v1/vaults/{owner}/{repo}/secrets/{id}", s.keywayDelete)
	s.mux.HandleFunc("POST /keyway/v1/secrets/push", s.keywayBulkPush)
}

// hasScope says whether tok may act with scope.
func (s *Server) hasScope(tok, scope string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, st := s.keyOf(tok); st != keyUnknown {
		return slices.Contains(k.Scopes, scope) // a managed key has exactly its scopes
	}
	scopes, limited := s.data.Scopes[tok]
	return !limited || slices.Contains(scopes, scope)
}

// keywayWritable checks scope, vault and environment for a write; it reports whether the
// request may go on.
func (s *Server) keywayWritable(w http.ResponseWriter, r *http.Request, scope, vault, env string) bool {
	if !s.hasScope(bearer(r), scope) {
		problem(w, http.StatusForbidden, "forbidden", "Forbidden", "API key missing required scope(s): "+scope)
		return false
	}
	_, _, forbidden := s.secrets(vault, env)
	switch {
	case forbidden:
		problem(w, http.StatusForbidden, "forbidden", "Forbidden", "You do not have access to this repository")
		return false
	case !s.hasVault(vault):
		problem(w, http.StatusNotFound, "not-found", "Not Found", "Vault not found. Run keyway init first.")
		return false
	}
	if env != "" && !s.hasEnvironment(vault, env) {
		problem(w, http.StatusBadRequest, "validation-error", "Bad Request",
			fmt.Sprintf("Environment '%s' does not exist in this vault. Available environments: %s", env, strings.Join(s.environments(vault), ", ")))
		return false
	}
	return true
}

func (s *Server) keywayUpsert(w http.ResponseWriter, r *http.Request) {
	if !s.keywayGate(w, r, "write") {
		return
	}
	vault := r.PathValue("owner") + "/" + r.PathValue("repo")
	var body struct{ Key, Value, Environment string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil || body.Environment == "" {
		problem(w, http.StatusBadRequest, "validation-error", "Bad Request", "Invalid request data")
		return
	}
	if !keywayKeyRule.MatchString(body.Key) {
		writeJSON(w, http.StatusBadRequest, "application/problem+json", map[string]any{
			"type": "https://api.keyway.sh/errors/validation-error", "title": "Bad Request", "status": 400,
			"detail": "Invalid request data", "traceId": "dev-trace",
			"errors": []map[string]string{{"field": "key", "code": "invalid", "message": "Key must be uppercase with underscores (e.g., DATABASE_URL)"}},
		})
		return
	}
	if len(body.Value) > keywayMaxValue {
		problem(w, http.StatusBadRequest, "validation-error", "Bad Request", "Invalid request data")
		return
	}
	if !s.keywayWritable(w, r, "write:secrets", vault, body.Environment) {
		return
	}
	s.note("keyway.write:" + vault + "/" + body.Environment + "/" + body.Key)
	id, created := s.upsert(vault, body.Environment, body.Key, body.Value)
	status, word := http.StatusOK, "updated"
	if created {
		status, word = http.StatusCreated, "created"
	}
	writeJSON(w, status, "", map[string]any{"data": map[string]any{"id": id, "status": word}})
}

func (s *Server) keywayBulkPush(w http.ResponseWriter, r *http.Request) {
	if !s.keywayGate(w, r, "bulk-push") {
		return
	}
	var body struct {
		RepoFullName string            `json:"repoFullName"`
		Environment  string            `json:"environment"`
		Secrets      map[string]string `json:"secrets"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20)).Decode(&body); err != nil || body.RepoFullName == "" || body.Environment == "" || len(body.Secrets) > keywayMaxPushKeys {
		problem(w, http.StatusBadRequest, "validation-error", "Bad Request", "Invalid request data")
		return
	}
	if !s.keywayWritable(w, r, "write:secrets", body.RepoFullName, body.Environment) {
		return
	}
	created, updated, deleted := s.replaceEnvironment(body.RepoFullName, body.Environment, body.Secrets)
	writeJSON(w, http.StatusOK, "", map[string]any{"data": map[string]any{"success": true, "message": "Secrets pushed successfully",
		"stats": map[string]int{"created": created, "updated": updated, "deleted": deleted}}})
}

func (s *Server) keywayList(w http.ResponseWriter, r *http.Request) {
	if !s.keywayGate(w, r, "list") {
		return
	}
	vault := r.PathValue("owner") + "/" + r.PathValue("repo")
	if !s.keywayWritable(w, r, "read:secrets", vault, "") {
		return
	}
	limit, offset := 20, 0
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v > 0 {
		limit = min(v, 100)
	}
	if v, err := strconv.Atoi(r.URL.Query().Get("offset")); err == nil && v >= 0 {
		offset = v
	}
	all := s.listKeys(vault)
	page := all[min(offset, len(all)):min(offset+limit, len(all))]
	writeJSON(w, http.StatusOK, "", map[string]any{"data": page, "meta": map[string]any{
		"pagination": map[string]any{"total": len(all), "limit": limit, "offset": offset, "hasMore": offset+limit < len(all)}}})
}

func (s *Server) keywayDelete(w http.ResponseWriter, r *http.Request) {
	if !s.keywayGate(w, r, "delete") {
		return
	}
	vault := r.PathValue("owner") + "/" + r.PathValue("repo")
	if !s.keywayWritable(w, r, "delete:secrets", vault, "") {
		return
	}
	if !s.trash(vault, r.PathValue("id")) {
		problem(w, http.StatusNotFound, "not-found", "Not Found", "Secret not found")
		return
	}
	writeJSON(w, http.StatusOK, "", map[string]any{"data": map[string]any{"success": true}})
}

// secretID is the id of a key of an environment: stable for as long as the key exists.
func (s *Server) secretID(vault, env, key string) string {
	k := vault + "\x00" + env + "\x00" + key
	if id, ok := s.ids[k]; ok {
		return id
	}
	s.seq++
	id := fmt.Sprintf("sec_%06d", s.seq)
	s.ids[k] = id
	return id
}

// upsert sets one key; it reports the key's id and whether it was created. Each update
// keeps the previous value as a version (counted as keyway.version).
func (s *Server) upsert(vault, env, key, value string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vals := s.data.Vaults[vault][env]
	if vals == nil {
		vals = map[string]string{}
		s.data.Vaults[vault][env] = vals
	}
	_, existed := vals[key]
	if existed {
		s.counts["keyway.version"]++
	}
	vals[key] = value
	return s.secretID(vault, env, key), !existed
}

// replaceEnvironment makes env hold exactly secrets: keys it does not name go to the trash.
func (s *Server) replaceEnvironment(vault, env string, secrets map[string]string) (created, updated, deleted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.data.Vaults[vault][env]
	for k, v := range secrets {
		prev, ok := old[k]
		switch {
		case !ok:
			created++
		case prev != v:
			updated++
		}
	}
	for k := range old {
		if _, ok := secrets[k]; !ok {
			deleted++
			delete(s.ids, vault+"\x00"+env+"\x00"+k)
		}
	}
	fresh := make(map[string]string, len(secrets))
	for k, v := range secrets {
		fresh[k] = v
	}
	s.data.Vaults[vault][env] = fresh
	s.counts["keyway.trashed"] += deleted
	return created, updated, deleted
}

// listKeys lists the keys of every environment of vault with their ids (no values).
func (s *Server) listKeys(vault string) []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]string
	for env, vals := range s.data.Vaults[vault] {
		for k := range vals {
			out = append(out, map[string]string{"id": s.secretID(vault, env, k), "key": k, "environment": env})
		}
	}
	slices.SortFunc(out, func(a, b map[string]string) int { return strings.Compare(a["id"], b["id"]) })
	return out
}

// trash removes the key with id; it reports whether there was one.
func (s *Server) trash(vault, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.ids {
		if v != id {
			continue
		}
		parts := strings.SplitN(k, "\x00", 3)
		if parts[0] != vault {
			return false
		}
		delete(s.data.Vaults[vault][parts[1]], parts[2])
		delete(s.ids, k)
		s.counts["keyway.trashed"]++
		return true
	}
	return false
}

func (s *Server) hasEnvironment(vault, env string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.data.Vaults[vault][env]
	return ok
}

func (s *Server) environments(vault string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for e := range s.data.Vaults[vault] {
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}

// Secrets returns a copy of an environment's values (tests: what a push left there).
func (s *Server) Secrets(vault, env string) map[string]string {
	vals, _, _ := s.secrets(vault, env)
	return vals
}

// SetScopes limits a token to scopes (tests: a key without write:secrets).
func (s *Server) SetScopes(tok string, scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data.Scopes == nil {
		s.data.Scopes = map[string][]string{}
	}
	s.data.Scopes[tok] = scopes
}
