package devvault

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func writeServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	s := New(&Data{Tokens: []string{"kw_live_all", "kw_live_ro"}, Vaults: map[string]map[string]map[string]string{
		"acme/app": {"production": {"A": "1", "B": "2", "C": "3"}, "staging": {}},
	}}, Options{})
	s.SetScopes("kw_live_ro", "read:secrets")
	h := httptest.NewServer(s)
	t.Cleanup(h.Close)
	return s, h
}

func call(t *testing.T, h *httptest.Server, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, h.URL+"/keyway"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// The documented trap: the bulk endpoint replaces the environment; the per-key endpoint
// leaves the other keys in place.
func TestKeywayBulkPushReplacesPerKeyDoesNot(t *testing.T) {
	s, h := writeServer(t)
	code, out := call(t, h, "POST", "/v1/vaults/acme/app/secrets", "kw_live_all", `{"key":"D","value":"4","environment":"production"}`)
	if code != 201 || out["data"].(map[string]any)["status"] != "created" {
		t.Fatalf("upsert new: %d %v", code, out)
	}
	code, out = call(t, h, "POST", "/v1/vaults/acme/app/secrets", "kw_live_all", `{"key":"A","value":"1b","environment":"production"}`)
	if code != 200 || out["data"].(map[string]any)["status"] != "updated" {
		t.Fatalf("upsert existing: %d %v", code, out)
	}
	if got := s.Secrets("acme/app", "production"); len(got) != 4 || got["A"] != "1b" || got["C"] != "3" {
		t.Fatalf("per-key writes: %v", got)
	}
	code, out = call(t, h, "POST", "/v1/secrets/push", "kw_live_all", `{"repoFullName":"acme/app","environment":"production","secrets":{"A":"x"}}`)
	stats := out["data"].(map[string]any)["stats"].(map[string]any)
	if code != 200 || stats["deleted"] != float64(3) || stats["updated"] != float64(1) {
		t.Fatalf("bulk push: %d %v", code, out)
	}
	if got := s.Secrets("acme/app", "production"); len(got) != 1 {
		t.Fatalf("bulk push of one key left %v", got)
	}
}

func TestKeywayWriteRules(t *testing.T) {
	_, h := writeServer(t)
	for _, tc := range []struct {
		name, token, body string
		code              int
		detail            string
	}{
		{"lower-case key", "kw_live_all", `{"key":"db_pass","value":"x","environment":"production"}`, 400, "Invalid request data"},
		{"value over 64 KiB", "kw_live_all", `{"key":"BIG","value":"` + strings.Repeat("x", 64<<10+1) + `","environment":"production"}`, 400, "Invalid request data"},
		{"no write scope", "kw_live_ro", `{"key":"OK","value":"x","environment":"production"}`, 403, "API key missing required scope(s): write:secrets"},
		{"undeclared environment", "kw_live_all", `{"key":"OK","value":"x","environment":"qa"}`, 400, "Environment 'qa' does not exist in this vault. Available environments: production, staging"},
	} {
		code, out := call(t, h, "POST", "/v1/vaults/acme/app/secrets", tc.token, tc.body)
		if code != tc.code || out["detail"] != tc.detail {
			t.Errorf("%s: %d %v", tc.name, code, out)
		}
	}
	code, out := call(t, h, "POST", "/v1/vaults/acme/none/secrets", "kw_live_all", `{"key":"OK","value":"x","environment":"production"}`)
	if code != 404 || out["detail"] != "Vault not found. Run keyway init first." {
		t.Errorf("missing vault: %d %v", code, out)
	}
}

func TestKeywayListAndDelete(t *testing.T) {
	s, h := writeServer(t)
	code, out := call(t, h, "GET", "/v1/vaults/acme/app/secrets?limit=100", "kw_live_all", "")
	items := out["data"].([]any)
	if code != 200 || len(items) != 3 {
		t.Fatalf("list: %d %v", code, out)
	}
	var id string
	for _, it := range items {
		if m := it.(map[string]any); m["key"] == "B" {
			id = m["id"].(string)
		}
	}
	if code, _ := call(t, h, "DELETE", "/v1/vaults/acme/app/secrets/"+id, "kw_live_ro", ""); code != 403 {
		t.Fatalf("delete without delete:secrets: %d", code)
	}
	if code, _ := call(t, h, "DELETE", "/v1/vaults/acme/app/secrets/"+id, "kw_live_all", ""); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if got := s.Secrets("acme/app", "production"); len(got) != 2 || got["B"] != "" {
		t.Fatalf("after delete: %v", got)
	}
}
