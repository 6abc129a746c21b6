package binding

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/controllers/resolve"
	"github.com/keyferry/keyferry/internal/render"
)

// Translations of a binding's spec into the plain inputs of internal packages.

// bindingSource is one vault environment the binding reads: what it asks of the connection and
// how its values enter the Secret (render.Source without the values).
type bindingSource struct {
	read   resolve.Read
	render render.Source
}

// sources are the binding's sources in merge order: vault/environment (with keys, rename,
// request, decodingStrategy) when set, then spec.sources.
func sources(b *kf.SecretBinding) []bindingSource {
	var out []bindingSource
	if b.Spec.Vault != "" {
		out = append(out, newSource(resolve.Read{Vault: b.Spec.Vault, Environment: b.Spec.Environment, Request: b.Spec.Request},
			b.Spec.Keys, b.Spec.Rename, "", b.Spec.DecodingStrategy))
	}
	for _, s := range b.Spec.Sources {
		out = append(out, newSource(resolve.Read{Vault: s.Vault, Environment: s.Environment, Request: s.Request},
			s.Keys, s.Rename, s.Prefix, s.DecodingStrategy))
	}
	if len(out) > 1 {
		// Errors name the source only when there is more than one.
		for i := range out {
			out[i].render.Name = fmt.Sprintf("source %d (%s, %s)", i+1, out[i].read.Vault, out[i].read.Environment)
		}
	}
	return out
}

func newSource(rd resolve.Read, keys *kf.KeySelector, rename map[string]kf.SecretKeyName, prefix string, dec kf.DecodingStrategy) bindingSource {
	s := bindingSource{read: rd, render: render.Source{Prefix: prefix}}
	if keys != nil {
		s.render.Include, s.render.Exclude = keys.Include, keys.Exclude
	}
	if len(rename) > 0 {
		s.render.Rename = make(map[string]string, len(rename))
		for k, v := range rename {
			s.render.Rename[k] = string(v)
		}
	}
	if dec != kf.DecodingNone {
		s.render.Decoding = render.Decoding(dec)
	}
	return s
}

// templates are the binding's templates: templateFrom's ConfigMaps, then template.data
// (which wins a key); digest is a keyed digest of the templateFrom part ("" without it),
// kept on the Secret so a ConfigMap change re-renders it.
type templates struct {
	render.Templates
	digest string
}

// templates reads the binding's templates; a ConfigMap that is missing, not labelled
// keyferry.dev/template, or lacks an item is a condition error naming it.
func (r *Reconciler) templates(ctx context.Context, b *kf.SecretBinding) (templates, error) {
	t := templates{Templates: render.Templates{Values: map[string]string{}, KeysAndValues: map[string]string{}}}
	if len(b.Spec.Target.TemplateFrom) > 0 {
		h := hmac.New(sha256.New, r.HMACKey)
		for _, from := range b.Spec.Target.TemplateFrom {
			cm, err := r.templateConfigMap(ctx, b.Namespace, from.ConfigMap.Name)
			if err != nil {
				return t, err
			}
			for _, item := range from.ConfigMap.Items {
				text, ok := cm.Data[item.Key]
				if !ok {
					return t, conditions.StalledErr(kf.ReasonInvalidSpec, "ConfigMap %s has no key %q (target.templateFrom)", cm.Name, item.Key)
				}
				if item.TemplateAs == kf.TemplateAsKeysAndValues {
					t.KeysAndValues[cm.Name+"/"+item.Key] = text
				} else {
					t.Values[item.Key] = text
				}
				_, _ = fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", cm.Name, item.Key, item.TemplateAs, text)
			}
		}
		t.digest = hex.EncodeToString(h.Sum(nil))[:32]
	}
	if tt := b.Spec.Target.Template; tt != nil {
		for k, v := range tt.Data {
			t.Values[k] = v
		}
	}
	return t, nil
}

// templateConfigMap reads a template ConfigMap from the labelled cache; on a miss it reads
// live once, to tell a missing ConfigMap from one that did not opt in.
func (r *Reconciler) templateConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	cm := &corev1.ConfigMap{}
	err := r.TemplateConfigMaps.Get(ctx, key, cm)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, cm)
		switch {
		case apierrors.IsNotFound(err):
			return nil, conditions.StalledErr(kf.ReasonInvalidSpec, "ConfigMap %s not found in namespace %s (target.templateFrom)", name, namespace)
		case err == nil:
			return nil, conditions.StalledErr(kf.ReasonNotAllowed, "ConfigMap %s does not carry the label %s=\"true\": keyferry reads templates only from ConfigMaps that opt in", name, kf.LabelTemplate)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s: %w", key, err)
	}
	return cm, nil
}

// templateConfigMapNames are the ConfigMaps a binding reads templates from (its index).
func templateConfigMapNames(b *kf.SecretBinding) []string {
	var names []string
	for _, f := range b.Spec.Target.TemplateFrom {
		if !slices.Contains(names, f.ConfigMap.Name) {
			names = append(names, f.ConfigMap.Name)
		}
	}
	return names
}

// renderError classifies a render failure: a value from the vault that does not decode is
// InvalidResponse (a later refresh may bring a good one); the rest needs a change of spec.
func renderError(err error) error {
	var re *render.Error
	if errors.As(err, &re) {
		switch {
		case re.TooLarge:
			return conditions.StalledErr(kf.ReasonTooLarge, "%s", re.Message)
		case re.FromVault:
			return conditions.TransientErr(kf.ReasonInvalidResponse, "%s", re.Message)
		}
	}
	return conditions.StalledErr(kf.ReasonInvalidSpec, "%s", err.Error())
}

// typeError classifies a typed Secret's failed check: InvalidSpec when a template made
// the key, InvalidResponse when it came from the vault as it is.
func typeError(err error, t templates) error {
	var te *render.TypeError
	if errors.As(err, &te) {
		if _, templated := t.Values[te.Key]; templated || len(t.KeysAndValues) > 0 {
			return conditions.StalledErr(kf.ReasonInvalidSpec, "%s (rendered by target.template)", te.Error())
		}
		return conditions.TransientErr(kf.ReasonInvalidResponse, "%s (as the vault holds it)", te.Error())
	}
	return err
}
