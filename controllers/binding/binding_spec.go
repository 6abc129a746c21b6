package binding

import (
	"errors"

	"github.com/keyferry/keyferry/controllers/common"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/render"
	"github.com/keyferry/keyferry/internal/vault"
)

// Translations of a binding's spec into the plain inputs of internal packages.

// vaultTarget is what the binding reads, with the request rq (nil: the native endpoint).
func vaultTarget(b *kf.SecretBinding, rq *kf.RequestSpec) vault.Target {
	return vault.Target{Vault: b.Spec.Vault, Environment: b.Spec.Environment, Request: common.PullRequest(rq)}
}

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
		return common.StalledErr(kf.ReasonTooLarge, "%s", re.Message)
	}
	return common.StalledErr(kf.ReasonInvalidSpec, "%s", err.Error())
}
