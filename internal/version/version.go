// Package version holds keyferry's version, set at build time with -ldflags -X.
package version

// Version is keyferry's version; "dev" for builds without -ldflags.
var Version = "dev"

// UserAgent is the User-Agent keyferry sends to providers and the API server.
func UserAgent() string { return "keyferry/" + Version }
