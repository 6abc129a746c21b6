package vault

// http: the generic provider. Everything comes from the spec; errors are read in any of
// the common JSON shapes or as plain text.
var httpGeneric = &Preset{
	Name:    "http",
	Dialect: DialectGeneric,
}
