// Package hmackey keeps the installation's HMAC key in a Secret in the operator's
// namespace: generated once, read at every start.
package hmackey

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// SecretName is the Secret that holds the key, under data key "key".
const SecretName = "keyferry-hmac-key"

const dataKey = "key"

// Ensure returns the key from namespace's Secret, creating it with 32 random bytes first
// if it does not exist. Concurrent starts agree: the loser of the create reads the winner's.
func Ensure(ctx context.Context, c client.Client, namespace string) ([]byte, error) {
	key := types.NamespacedName{Namespace: namespace, Name: SecretName}
	for attempt := 0; attempt < 3; attempt++ {
		s := &corev1.Secret{}
		err := c.Get(ctx, key, s)
		if err == nil {
			if k := s.Data[dataKey]; len(k) >= 16 {
				return k, nil
			}
			return nil, fmt.Errorf("the Secret %s/%s has no usable %q key: delete it to have a new one generated", namespace, SecretName, dataKey)
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, SecretName, err)
		}
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: namespace,
				Labels: map[string]string{"app.kubernetes.io/part-of": "keyferry"}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{dataKey: k},
		}
		err = c.Create(ctx, s)
		switch {
		case err == nil:
			return k, nil
		case apierrors.IsAlreadyExists(err):
			continue
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("namespace %s does not exist: create it or run with --namespace", namespace)
		default:
			return nil, fmt.Errorf("creating Secret %s/%s: %w", namespace, SecretName, err)
		}
	}
	return nil, fmt.Errorf("could not read or create Secret %s/%s", namespace, SecretName)
}
