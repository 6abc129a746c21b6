package vault

import (
	"maps"
	"net/http"
	"slices"
	"time"
)

// Preset is one vendor's quirks: where it is, how it authenticates by default, how it
// writes errors, what it allows, and (keyway) how to pull an environment natively.
type Preset struct {
	Name       string
	DefaultURL string
	Dialect    Dialect
	// APIKeyHeader is the header an apiKey auth uses when the spec names none.
	APIKeyHeader string
	// Login holds the defaults of a login auth.
	Login LoginConfig
	// Budget is the vendor's documented limit, used when the spec sets none.
	Budget RateBudget
	// NativePull builds the request for an environment's secrets; nil when the binding
	// must say how (its request block).
	NativePull *PullRequest
	// Push is the vendor's documented write API; nil when it documents none.
	Push *PushPreset
	// Keys is the vendor's documented API-key API (rotation); nil when it documents none.
	Keys *KeyAPI
	// Classify may re-classify an error response; nil keeps the status-code mapping.
	Classify func(op string, resp *http.Response, body []byte, r Reason) Reason
}

// RateBudget is at most Requests per Period.
type RateBudget struct {
	Requests int
	Period   time.Duration
}

// presets by provider name: one line per vendor; each vendor's preset and error dialect
// live in its vendor_<name>.go (its development stand-in in internal/dev/devvault, in a
// file of the same name).
var presets = byName(keyway, keystash, stash, knowledgeStack, keymint, httpGeneric)

func byName(ps ...*Preset) map[string]*Preset {
	m := make(map[string]*Preset, len(ps))
	for _, p := range ps {
		m[p.Name] = p
	}
	return m
}

// Presets names every provider with a preset, sorted.
func Presets() []string { return slices.Sorted(maps.Keys(presets)) }

// PresetFor returns the preset of a provider, or nil for an unknown name.
func PresetFor(provider string) *Preset { return presets[provider] }
