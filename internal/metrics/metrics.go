// Package metrics defines keyferry's Prometheus metrics, served on the manager's metrics
// endpoint beside controller-runtime's own. Label values are bounded: connection names,
// operation kinds, status classes and condition reasons; never binding names or vault
// paths.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/keyferry/keyferry/internal/vault"
)

var (
	providerRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyferry_provider_requests_total",
		Help: "Requests sent to providers, by connection, operation (login, refresh, pull, signout) and HTTP status class (2xx..5xx, or error when no response arrived).",
	}, []string{"connection", "op", "code"})
	fetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyferry_fetches_total",
		Help: "Secret fetches asked of the coalescing fetcher, by connection and whether a request was sent or a shared/cached result served.",
	}, []string{"connection", "result"})
	heldBack = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyferry_requests_held_total",
		Help: "Requests not sent at once because the provider asked to wait (cause=provider) or the client-side budget was spent (cause=budget).",
	}, []string{"connection", "cause"})
	heldSeconds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyferry_requests_held_seconds_total",
		Help: "Sum of the waits callers were told (or held) before a request could leave, by cause.",
	}, []string{"connection", "cause"})
	syncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyferry_binding_syncs_total",
		Help: "SecretBinding passes that fetched or failed, by resulting Ready reason.",
	}, []string{"reason"})
	bindings = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyferry_bindings",
		Help: "SecretBindings this manager handles, by their Ready reason (Synced, Unauthorized, RateLimited, ...).",
	}, []string{"reason"})
	restarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyferry_workload_restarts_total",
		Help: "Workload restarts because data they consume changed, by kind (Deployment, StatefulSet, DaemonSet) and result (restarted, failed).",
	}, []string{"kind", "result"})
	credentialExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyferry_credential_expiry_timestamp_seconds",
		Help: "When a connection's credential lapses (Unix seconds), for credentials whose lapse is known (a Keyway key's expiresAt, a bearer JWT's exp).",
	}, []string{"connection"})
	webhookRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyferry_webhook_requests_total",
		Help: "Calls to the webhook listener, by receiver (namespace/name; empty when the path is unknown) and result (accepted, merged into a pending round, ping, suspended, or the check that refused it: unknown-path, bad-signature, missing-signature, stale, replay, too-large, rate-limited, method).",
	}, []string{"receiver", "result"})
	webhookRounds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyferry_webhook_rounds_total",
		Help: "Refresh rounds valid hooks caused, by receiver and result (ok, failed).",
	}, []string{"receiver", "result"})
	writes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyferry_secret_writes_total",
		Help: "Target Secret decisions after a fetch: applied (written) or unchanged (skipped, the keyed digest matched).",
	}, []string{"result"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(providerRequests, fetches, heldBack, heldSeconds, syncs, writes, bindings, restarts, credentialExpiry, webhookRequests, webhookRounds)
	// Series exist from the start (at 0), so rate() and dashboards work before the first event.
	writes.WithLabelValues("applied")
	writes.WithLabelValues("unchanged")
	syncs.WithLabelValues("Synced")
	for _, kind := range []string{"Deployment", "StatefulSet", "DaemonSet"} {
		restarts.WithLabelValues(kind, "restarted")
		restarts.WithLabelValues(kind, "failed")
	}
}

// WorkloadRestart counts a restart of a workload of kind (ok false: the patch failed).
func WorkloadRestart(kind string, ok bool) {
	result := "restarted"
	if !ok {
		result = "failed"
	}
	restarts.WithLabelValues(kind, result).Inc()
}

// ClientHooks returns the provider client hooks that feed the metrics of a connection.
func ClientHooks(connection string) vault.Hooks {
	for _, cause := range []string{"provider", "budget"} {
		heldBack.WithLabelValues(connection, cause)
		heldSeconds.WithLabelValues(connection, cause)
	}
	fetches.WithLabelValues(connection, "sent")
	fetches.WithLabelValues(connection, "shared")
	return vault.Hooks{
		Request: func(op string, status int) {
			code := "error"
			if status > 0 {
				code = strconv.Itoa(status/100) + "xx"
			}
			providerRequests.WithLabelValues(connection, op, code).Inc()
		},
		Paused: func(_ string, byProvider bool, wait time.Duration) {
			cause := "budget"
			if byProvider {
				cause = "provider"
			}
			heldBack.WithLabelValues(connection, cause).Inc()
			heldSeconds.WithLabelValues(connection, cause).Add(max(wait, 0).Seconds())
		},
		Fetch: func(shared bool) {
			result := "sent"
			if shared {
				result = "shared"
			}
			fetches.WithLabelValues(connection, result).Inc()
		},
	}
}

// CredentialExpiry records when connection's credential lapses; a zero time forgets it
// (unknown, or the connection is gone).
func CredentialExpiry(connection string, at time.Time) {
	if at.IsZero() {
		credentialExpiry.DeleteLabelValues(connection)
		return
	}
	credentialExpiry.WithLabelValues(connection).Set(float64(at.Unix()))
}

// Sync counts one binding pass that reached a result.
func Sync(reason string) { syncs.WithLabelValues(reason).Inc() }

// SecretWrite counts a write decision.
func SecretWrite(applied bool) {
	if applied {
		writes.WithLabelValues("applied").Inc()
		return
	}
	writes.WithLabelValues("unchanged").Inc()
}

// bindingReasons is each binding's last Ready reason, behind the keyferry_bindings gauge.
var bindingReasons = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// BindingReason records that binding (namespace/name) now shows reason; "" forgets it.
func BindingReason(binding, reason string) {
	bindingReasons.Lock()
	defer bindingReasons.Unlock()
	old, had := bindingReasons.m[binding]
	if had && old == reason {
		return
	}
	if had {
		bindings.WithLabelValues(old).Dec()
	}
	if reason == "" {
		delete(bindingReasons.m, binding)
		return
	}
	bindingReasons.m[binding] = reason
	bindings.WithLabelValues(reason).Inc()
}

// WebhookRequest counts one call to the webhook listener.
func WebhookRequest(receiver, result string) { webhookRequests.WithLabelValues(receiver, result).Inc() }

// WebhookRound counts one refresh round.
func WebhookRound(receiver string, _ int, err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	webhookRounds.WithLabelValues(receiver, result).Inc()
}
