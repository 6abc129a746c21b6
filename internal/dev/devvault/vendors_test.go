package devvault

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/keyferry/keyferry/internal/vault"
)

// TestEveryVendorHasPresetDialectAndStandIn: a vendor is its preset with its error dialect
// (internal/vault/vendor_<name>.go) and its stand-in here (vendor_<name>.go); none may lack
// one of the three. The generic http provider has no vendor to stand in for.
func TestEveryVendorHasPresetDialectAndStandIn(t *testing.T) {
	var vendors []string
	for _, name := range vault.Presets() {
		p := vault.PresetFor(name)
		if p.Dialect == nil {
			t.Errorf("preset %s has no error dialect", name)
		}
		if name != "http" {
			vendors = append(vendors, name)
		}
	}
	if !slices.Equal(vendors, StandIns()) {
		t.Fatalf("presets %v, stand-ins %v: each vendor needs both", vendors, StandIns())
	}
	srv := New(&Data{}, Options{})
	for _, name := range vendors {
		// Every stand-in answers under /<vendor>/; an unknown path there is the mux's 404,
		// a known one is the vendor's own answer (401 without credentials, 405 wrong method...).
		known := 0
		for _, path := range []string{"/v1/secrets/pull", "/login", "/api/v1/sdk/config", "/v1/auth/pw/signin", "/key"} {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, httptest.NewRequest(method, "/"+name+path, nil))
				if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
					known++
				}
			}
		}
		if known == 0 {
			t.Errorf("stand-in %s answers none of its vendor's endpoints", name)
		}
	}
}
