package vault

// Keymint: at_ tokens as Bearer; errors {"message","code"}; 429 carries Retry-After: 60.
func init() {
	registerPreset(&Preset{
		Name:       "keymint",
		DefaultURL: "https://api.keymint.dev",
		Dialect:    DialectKeymint,
	})
}
