package resolve

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/conditions"
)

// CredentialSecret reads a Secret that opted in as credentials; a missing or unlabelled
// Secret is CredentialsNotFound.
func CredentialSecret(ctx context.Context, reader client.Reader, namespace, name string) (*corev1.Secret, error) {
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

// CredentialKey returns one key of a credential Secret; a missing key is CredentialsNotFound.
func CredentialKey(s *corev1.Secret, key string) ([]byte, error) {
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		return nil, conditions.StalledErr(kf.ReasonCredentialsNotFound, "Secret %s/%s has no key %q", s.Namespace, s.Name, key)
	}
	return v, nil
}
