package connection

import (
	"context"
	"fmt"
	"strings"

	"github.com/keyferry/keyferry/controllers/conditions"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/vault"
)

// vaultConfig turns a connection's spec and its credentials into the provider client's
// config, and returns the Secret the credential came from (nil when none was read).
// secretNamespace returns the namespace of a reference (the connection's own for a
// VaultConnection, the named one for a ClusterVaultConnection).
func vaultConfig(ctx context.Context, reader client.Reader, spec *kf.VaultConnectionSpec, secretNamespace func(ns string) string) (vault.Config, *corev1.Secret, error) {
	cfg := vault.Config{
		Provider:          string(spec.Provider),
		BaseURL:           spec.URL,
		AllowInsecureHTTP: spec.AllowInsecureHTTP,
	}
	if spec.RateLimit != nil {
		cfg.Budget = vault.RateBudget{Requests: int(spec.RateLimit.Requests), Period: spec.RateLimit.Period.Duration}
	}
	if spec.RequestTimeout != nil {
		cfg.RequestTimeout = spec.RequestTimeout.Duration
	}
	if ref := spec.CABundleSecretRef; ref != nil {
		b, err := secretKey(ctx, reader, secretNamespace(ref.Namespace), ref.Name, ref.Key)
		if err != nil {
			return cfg, nil, err
		}
		cfg.CABundle = b
	}
	cred, err := authConfig(ctx, reader, spec.Auth, secretNamespace, &cfg)
	// The URL itself is checked by vault.New (an InvalidSpec error there).
	return cfg, cred, err
}

// authConfig reads the credentials auth names into cfg and returns their Secret.
func authConfig(ctx context.Context, reader client.Reader, auth kf.AuthSpec, secretNamespace func(ns string) string, cfg *vault.Config) (*corev1.Secret, error) {
	switch {
	case auth.Bearer != nil:
		ref := auth.Bearer.SecretRef
		s, b, err := servingToken(ctx, reader, secretNamespace(ref.Namespace), ref, auth.Bearer.Rotation != nil)
		if err != nil {
			return s, err
		}
		cfg.Auth, cfg.Token = vault.AuthBearer, strings.TrimSpace(string(b))
		return s, nil
	case auth.APIKey != nil:
		ref := auth.APIKey.SecretRef
		s, b, err := servingToken(ctx, reader, secretNamespace(ref.Namespace), ref, auth.APIKey.Rotation != nil)
		if err != nil {
			return s, err
		}
		cfg.Auth, cfg.Token, cfg.Header = vault.AuthAPIKey, strings.TrimSpace(string(b)), auth.APIKey.Header
		return s, nil
	case auth.Login != nil:
		l := auth.Login
		ns := secretNamespace(l.SecretRef.Namespace)
		s, err := credentialSecret(ctx, reader, ns, l.SecretRef.Name)
		if err != nil {
			return nil, err
		}
		user, err := keyOf(s, "username")
		if err != nil {
			return s, err
		}
		pass, err := keyOf(s, "password")
		if err != nil {
			return s, err
		}
		cfg.Auth, cfg.Username, cfg.Password = vault.AuthLogin, strings.TrimSpace(string(user)), string(pass)
		cfg.Login = vault.LoginConfig{
			Path: l.Path, Encoding: vault.Encoding(l.Encoding), UsernameField: l.UsernameField,
			PasswordField: l.PasswordField, TokenField: l.TokenField, TokenCookie: l.TokenCookie,
			RefreshPath: l.RefreshPath, SignoutPath: l.SignoutPath,
		}
		if l.TokenTTL != nil {
			cfg.Login.TTL = l.TokenTTL.Duration
		}
		return s, nil
	}
	return nil, conditions.StalledErr(kf.ReasonInvalidSpec, "auth sets none of bearer, apiKey or login")
}

// servingToken reads the static credential of ref. While a rotation has written a new key
// that no read has verified yet (the previous key is still beside it), the previous key
// serves: bindings never use an unproven key.
func servingToken(ctx context.Context, reader client.Reader, namespace string, ref kf.SecretKeyReference, rotating bool) (*corev1.Secret, []byte, error) {
	s, err := credentialSecret(ctx, reader, namespace, ref.Name)
	if err != nil {
		return nil, nil, err
	}
	if prev := s.Data[ref.Key+kf.PreviousKeySuffix]; rotating && len(prev) > 0 {
		return s, prev, nil
	}
	b, err := keyOf(s, ref.Key)
	return s, b, err
}

// credentialsIndex indexes connections by the Secrets they read ("namespace/name").
const credentialsIndex = "credentials"

// credentialKeys lists the Secrets a connection reads, as "namespace/name": the same
// references vaultConfig reads, for the index that lets a changed Secret wake them.
func credentialKeys(o client.Object) []string {
	conn := o.(kf.Connection)
	spec := conn.ConnectionSpec()
	var refs [][2]string // namespace field, name
	if r := spec.CABundleSecretRef; r != nil {
		refs = append(refs, [2]string{r.Namespace, r.Name})
	}
	switch a := spec.Auth; {
	case a.Bearer != nil:
		refs = append(refs, [2]string{a.Bearer.SecretRef.Namespace, a.Bearer.SecretRef.Name})
	case a.APIKey != nil:
		refs = append(refs, [2]string{a.APIKey.SecretRef.Namespace, a.APIKey.SecretRef.Name})
	case a.Login != nil:
		refs = append(refs, [2]string{a.Login.SecretRef.Namespace, a.Login.SecretRef.Name})
	}
	keys := make([]string, 0, len(refs))
	for _, r := range refs {
		keys = append(keys, conn.SecretNamespace(r[0])+"/"+r[1])
	}
	return keys
}

// secretKey reads one key of a Secret; a missing Secret or key is CredentialsNotFound.
func secretKey(ctx context.Context, reader client.Reader, namespace, name, key string) ([]byte, error) {
	s, err := credentialSecret(ctx, reader, namespace, name)
	if err != nil {
		return nil, err
	}
	return keyOf(s, key)
}

// credentialSecret reads a Secret that opted in as credentials; a missing or unlabelled
// Secret is CredentialsNotFound.
func credentialSecret(ctx context.Context, reader client.Reader, namespace, name string) (*corev1.Secret, error) {
	if namespace == "" {
		return nil, conditions.StalledErr(kf.ReasonInvalidSpec, "secretRef %s names no namespace", name)
	}
	s := &corev1.Secret{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, conditions.StalledErr(kf.ReasonCredentialsNotFound, "Secret %s/%s not found", namespace, name)
		}
		if apierrors.IsForbidden(err) {
			return nil, conditions.StalledErr(kf.ReasonCredentialsNotFound, "Secret %s/%s cannot be read: %s", namespace, name, apierrors.ReasonForError(err))
		}
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	if s.Labels[kf.LabelCredentials] != "true" {
		return nil, conditions.StalledErr(kf.ReasonCredentialsNotFound, "Secret %s/%s is not labelled %s=true; label it to let keyferry use it as credentials", namespace, name, kf.LabelCredentials)
	}
	return s, nil
}

// keyOf returns one key of a credential Secret; a missing key is CredentialsNotFound.
func keyOf(s *corev1.Secret, key string) ([]byte, error) {
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		return nil, conditions.StalledErr(kf.ReasonCredentialsNotFound, "Secret %s/%s has no key %q", s.Namespace, s.Name, key)
	}
	return v, nil
}
