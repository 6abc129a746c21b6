package vault

import "time"

// Keyway: bearer tokens (JWTs, PATs, kw_live_ API keys), RFC 7807 errors, 100 requests per
// 15 minutes, and a native pull endpoint answering dotenv text in data.content. Its server
// answers over-limit requests with HTTP 500 plus retry-after, which the generic Retry-After
// handling turns into RateLimited.
func init() {
	registerPreset(&Preset{
		Name:       "keyway",
		DefaultURL: "https://api.keyway.sh",
		Dialect:    DialectRFC7807,
		Budget:     RateBudget{Requests: 100, Period: 15 * time.Minute},
		NativePull: &PullRequest{
			Method:   "GET",
			Path:     "/v1/secrets/pull?repo={vault}&environment={environment}",
			Format:   FormatDotenv,
			DataPath: "data.content",
		},
		Push: keywayPush,
	})
}
