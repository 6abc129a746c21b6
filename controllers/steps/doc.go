// Package steps holds the steps every keyferry reconciler runs around its own work, each
// in one place: the preamble that fetches the object and says where it stands (gone,
// being deleted, suspended, live), the finalizer step, and the status patch written once
// per pass from the status read and the status computed (in the manner of Flux's
// patch.Helper, for status alone).
package steps
