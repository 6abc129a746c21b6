// Package receiver is the RefreshReceiver side of keyferry: the index every replica keeps
// of where receivers listen (index.go), the round a valid hook causes (round.go), the
// listener that puts them together on every replica (listener.go), and the reconciler that
// writes a receiver's status on the leader (controller.go).
package receiver

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/controllers/resolve"
	"github.com/keyferry/keyferry/internal/webhook"
)

// entry is what the index and the status say of one receiver, computed the same way by
// both: its shared secret read from an opted-in Secret and the path that secret gives.
func entry(ctx context.Context, secrets client.Reader, rr *kf.RefreshReceiver) (webhook.Receiver, string, error) {
	if _, err := metav1.LabelSelectorAsSelector(&rr.Spec.Selector); err != nil {
		return webhook.Receiver{}, "", conditions.StalledErr(kf.ReasonInvalidSpec, "spec.selector: %s", err.Error())
	}
	s, err := resolve.CredentialSecret(ctx, secrets, rr.Namespace, rr.Spec.SecretRef.Name)
	if err != nil {
		return webhook.Receiver{}, "", err
	}
	key := rr.Spec.SecretRef.GetKey()
	secret, err := resolve.CredentialKey(s, key)
	if err != nil {
		return webhook.Receiver{}, "", err
	}
	if len(secret) < kf.MinReceiverSecretLength {
		// The length only: never a byte of the secret.
		return webhook.Receiver{}, "", conditions.StalledErr(kf.ReasonInvalidSpec,
			"the shared secret in Secret %s key %q is %d bytes; a receiver reachable from outside needs at least %d (e.g. openssl rand -hex 32)",
			s.Name, key, len(secret), kf.MinReceiverSecretLength)
	}
	rc := webhook.Receiver{Key: keyOf(rr), Kind: webhook.Kind(rr.Spec.Type), Secret: secret, Suspended: rr.Spec.Suspend}
	return rc, webhook.Path(rr.Namespace, rr.Name, secret), nil
}

// keyOf is a receiver's name in rounds and metrics.
func keyOf(o client.Object) string { return fmt.Sprintf("%s/%s", o.GetNamespace(), o.GetName()) }
