package plugin

import (
	"encoding/json"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// Advice is what to do next for each Ready reason: one line each, the same lines as the
// README's table "What to do when a binding is not Ready" (a test keeps them equal).
var Advice = map[string]string{
	kf.ReasonSynced:              "Nothing to do: the Secret holds the vault's data.",
	kf.ReasonProgressing:         "Wait: keyferry is working on the first sync of this generation.",
	kf.ReasonUnauthorized:        "Fix or rotate the credential in the connection's Secret (it must keep the label keyferry.dev/credentials: \"true\"); keyferry picks the change up at once.",
	kf.ReasonForbidden:           "Give the credential access to this vault and environment (Keyway: the scope and the environment permission the message names); no re-login will help.",
	kf.ReasonNotFound:            "Check spec.vault, spec.environment and the request path against the provider: it does not know them.",
	kf.ReasonRateLimited:         "Wait: keyferry retries at status.retryAfter by itself; if it recurs, raise refreshInterval or share one connection.",
	kf.ReasonProviderUnavailable: "Check that the provider is up and reachable at the connection's url (the message names the status or timeout); keyferry retries with backoff.",
	kf.ReasonInvalidResponse:     "Check request.format and request.dataPath against what the provider answers.",
	kf.ReasonInvalidSpec:         "Fix the spec as the message says (a regular expression, a template, a key name or a request).",
	kf.ReasonCredentialsNotFound: "Create the Secret the message names, with that key and the label keyferry.dev/credentials: \"true\".",
	kf.ReasonConnectionNotReady:  "Fix the connection first (its state is shown above); the binding follows by itself.",
	kf.ReasonTargetConflict:      "The target Secret is not keyferry's: delete it, pick another target.name, or use creationPolicy Merge and annotate it keyferry.dev/allow-merge: \"true\".",
	kf.ReasonTooLarge:            "Narrow keys.include or the template: the Secret would pass the 1 MiB limit.",
	kf.ReasonNotAllowed:          "keyferry's policy refused it (the egress deny list, or what the ClusterVaultConnection lends): ask the cluster admin, or use a connection of your own.",
	kf.ReasonConflict:            "Someone else owns it: remove their object or key, or (SecretPush) set conflictPolicy: Overwrite.",
	kf.ReasonSourceNotFound:      "Create the source Secret the message names, with the label keyferry.dev/push: \"true\".",
	kf.ReasonBindingsNotReady:    "Look at the namespaces in status.failedNamespaces: kubectl keyferry why <binding> -n <namespace>.",
	kf.ReasonAuthenticated:       "Nothing to do: the provider accepted the credentials.",
}

// adviceFor returns the advice for reason, or a pointer to the message.
func adviceFor(reason string) string {
	if a, ok := Advice[reason]; ok {
		return a
	}
	return "Read the message above."
}

// encode writes v as JSON or YAML.
func encode(w io.Writer, format string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if raw, err = yaml.JSONToYAML(raw); err != nil {
			return err
		}
	} else {
		raw = append(raw, '\n')
	}
	_, err = fmt.Fprint(w, string(raw))
	return err
}
