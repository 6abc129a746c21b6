package vault

// Stash: the key travels in X-Stash-Api-Key; endpoints are POSTs with a JSON body carrying
// shop_handle. No error bodies are published, so the status code is the truth.
var stash = &Preset{
	Name:         "stash",
	DefaultURL:   "https://api.stash.gg",
	APIKeyHeader: "X-Stash-Api-Key",
	Dialect:      DialectPlainText,
}
