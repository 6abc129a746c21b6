package v1beta1

import (
	"crypto/sha256"
	"encoding/hex"
)

// LabelValue is an object's name as the value of a label keyferry sets (LabelBinding and
// friends: at most 63 characters): the name, or for a longer one its start and a hash of
// the whole.
func LabelValue(name string) string {
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:50] + "-" + hex.EncodeToString(sum[:])[:12]
}
