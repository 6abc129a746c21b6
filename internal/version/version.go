// Package version holds keyferry's version, set at build time with -ldflags -X.
package version

// Version is keyferry's version; "dev" for builds without -ldflags.
var Version = "dev"

// UserAgent is the User-Agent keyferry sends to providers and the API server; a shard's
// name (see package shard) joins the product name, which the API server takes as the
// default field manager: "keyferry-shard-1-of-2/dev".
func UserAgent(shard ...string) string {
	name := "keyferry"
	if len(shard) > 0 && shard[0] != "" {
		name += "-" + shard[0]
	}
	return name + "/" + Version
}
