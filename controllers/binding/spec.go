package binding

import (
	"errors"

	"github.com/keyferry/keyferry/controllers/conditions"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/render"
)

// Translations of a binding's spec into the plain inputs of internal packages.

func renderSpec(b *kf.SecretBinding) render.Spec {
	s := render.Spec{}
	if k := b.Spec.Keys; k != nil {
		s.Include, s.Exclude = k.Include, k.Exclude
	}
	if len(b.Spec.Rename) > 0 {
		s.Rename = make(map[string]string, len(b.Spec.Rename))
		for k, v := range b.Spec.Rename {
			s.Rename[k] = string(v)
		}
	}
	if t := b.Spec.Target.Template; t != nil {
		s.Template = t.Data
	}
	return s
}

// renderError classifies a render failure: both need a change of spec (or of the vault's
// data, which a later refresh brings).
func renderError(err error) error {
	var re *render.Error
	if errors.As(err, &re) && re.TooLarge {
		return conditions.StalledErr(kf.ReasonTooLarge, "%s", re.Message)
	}
	return conditions.StalledErr(kf.ReasonInvalidSpec, "%s", err.Error())
}
