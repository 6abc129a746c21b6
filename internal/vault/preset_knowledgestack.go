package vault

// Knowledge Stack: API keys as Bearer, or JSON password sign-in whose token arrives either
// as access_token or in the ks_uat cookie (the vendor's docs disagree, so both are read);
// refresh through /v1/auth/uat, sign-out through /v1/auth/signout; FastAPI errors.
func init() {
	registerPreset(&Preset{
		Name:       "knowledgestack",
		DefaultURL: "https://api.knowledgestack.ai",
		Dialect:    DialectFastAPI,
		Login: LoginConfig{
			Path:          "/v1/auth/pw/signin",
			Encoding:      EncodingJSON,
			UsernameField: "email",
			PasswordField: "password",
			TokenField:    "access_token",
			TokenCookie:   "ks_uat",
			RefreshPath:   "/v1/auth/uat",
			SignoutPath:   "/v1/auth/signout",
		},
	})
}
