package connection

import (
	"context"
	"strings"

	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/controllers/resolve"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
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
		s, err := resolve.CredentialSecret(ctx, reader, ns, l.SecretRef.Name)
		if err != nil {
			return nil, err
		}
		user, err := resolve.CredentialKey(s, "username")
		if err != nil {
			return s, err
		}
		pass, err := resolve.CredentialKey(s, "password")
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
	s, err := resolve.CredentialSecret(ctx, reader, namespace, ref.Name)
	if err != nil {
		return nil, nil, err
	}
	if prev := s.Data[ref.Key+kf.PreviousKeySuffix]; rotating && len(prev) > 0 {
		return s, prev, nil
	}
	b, err := resolve.CredentialKey(s, ref.Key)
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
	s, err := resolve.CredentialSecret(ctx, reader, namespace, name)
	if err != nil {
		return nil, err
	}
	return resolve.CredentialKey(s, key)
}
