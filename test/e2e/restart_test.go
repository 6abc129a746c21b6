//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// deployments: "api" reads DB_USER of payments-env by env; "both" reads restart-user (a
// binding of DB_USER) and restart-dsn (a binding templating DB_USER), so one vault change
// moves two bindings;
// "worker" (a StatefulSet) mounts the whole payments-env; "plain" reads everything but did
// not opt in.
const workloads = `apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: restart-user, namespace: demo}
spec:
  connectionRef: {name: keyway}
  vault: acme/payments
  environment: production
  keys: {include: ["^DB_USER$"]}
---
apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: restart-dsn, namespace: demo}
spec:
  connectionRef: {name: keyway}
  vault: acme/payments
  environment: production
  target:
    template:
      data: {DSN: "postgres://{{ .DB_USER }}@db/app"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: demo, labels: {keyferry.dev/restart-on-change: "true"}}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: app
          image: example.com/app:1
          env:
            - name: DB_USER
              valueFrom: {secretKeyRef: {name: payments-env, key: DB_USER}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: both, namespace: demo, labels: {keyferry.dev/restart-on-change: "true"}}
spec:
  selector: {matchLabels: {app: both}}
  template:
    metadata: {labels: {app: both}}
    spec:
      containers:
        - name: app
          image: example.com/app:1
          env:
            - name: DB_USER
              valueFrom: {secretKeyRef: {name: restart-user, key: DB_USER}}
          envFrom:
            - secretRef: {name: restart-dsn}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: worker, namespace: demo, labels: {keyferry.dev/restart-on-change: "true"}}
spec:
  serviceName: worker
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      containers:
        - name: app
          image: example.com/app:1
          volumeMounts: [{name: secrets, mountPath: /secrets}]
      volumes:
        - name: secrets
          secret: {secretName: payments-env}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain, namespace: demo}
spec:
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec:
      containers:
        - name: app
          image: example.com/app:1
          envFrom:
            - secretRef: {name: payments-env}
---
apiVersion: v1
kind: Namespace
metadata: {name: elsewhere}
---
apiVersion: v1
kind: Secret
metadata: {name: payments-env, namespace: elsewhere}
stringData: {DB_USER: theirs}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: elsewhere, labels: {keyferry.dev/restart-on-change: "true"}}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: app
          image: example.com/app:1
          envFrom:
            - secretRef: {name: payments-env}
`

func restartedFor(t *testing.T, ns, kind, name string) string {
	t.Helper()
	return kubectl(t, "get", kind, name, "-n", ns, "-o", `jsonpath={.spec.template.metadata.annotations.keyferry\.dev/restarted-for}`)
}

func replicaSets(t *testing.T, app string) int {
	t.Helper()
	return len(strings.Fields(kubectl(t, "get", "rs", "-n", "demo", "-l", "app="+app, "-o", "name")))
}

func changeVault(t *testing.T, key, value string, bindings ...string) {
	t.Helper()
	vaultDebug(t, http.MethodPut, "/debug/secrets/acme/payments", map[string]string{"environment": "production", "key": key, "value": value})
	for _, b := range bindings {
		annotateRefresh(t, b)
	}
}

func TestWorkloadsRestartOnlyForWhatTheyConsume(t *testing.T) {
	if _, err := stack.KubectlIn(context.Background(), workloads, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	waitSB(t, "restart-user", "Synced")
	waitSB(t, "restart-dsn", "Synced")
	// First sight records what each reads; nothing restarts.
	for _, w := range []string{"deployment/api", "deployment/both", "statefulset/worker"} {
		waitFor(t, 30*time.Second, w+" recorded", func() (bool, string) {
			out := kubectl(t, "get", w, "-n", "demo", "-o", `jsonpath={.metadata.labels}`)
			return strings.Contains(out, kf.LabelPrefixConsumed), out
		})
	}
	waitFor(t, 30*time.Second, "first ReplicaSets", func() (bool, string) {
		return replicaSets(t, "api") == 1 && replicaSets(t, "both") == 1 && replicaSets(t, "plain") == 1, ""
	})
	for _, w := range []string{"deployment/api", "deployment/both", "statefulset/worker"} {
		kind, name, _ := strings.Cut(w, "/")
		if v := restartedFor(t, "demo", kind, name); v != "" {
			t.Fatalf("%s restarted on first sight (%s)", w, v)
		}
		// Recording what it reads changes nothing a rollout tool watches.
		if gen := kubectl(t, "get", w, "-n", "demo", "-o", "jsonpath={.metadata.generation}"); gen != "1" {
			t.Fatalf("%s: generation %s after first sight, want 1", w, gen)
		}
	}

	// A key only the StatefulSet reads: it restarts, the Deployments do not.
	changeVault(t, "STRIPE_KEY", "sk_test_restart", "payments")
	waitFor(t, 30*time.Second, "worker restarted", func() (bool, string) {
		return restartedFor(t, "demo", "statefulset", "worker") != "", ""
	})
	time.Sleep(3 * time.Second) // past the debounce: nothing else may follow
	if restartedFor(t, "demo", "deployment", "api") != "" || restartedFor(t, "demo", "deployment", "both") != "" {
		t.Fatal("a Deployment restarted for a key it does not read")
	}

	// DB_USER: api restarts once; both reads it through two bindings changing together and
	// restarts once too.
	changeVault(t, "DB_USER", "payments-v2", "payments", "restart-user", "restart-dsn")
	waitFor(t, 40*time.Second, "one new ReplicaSet each", func() (bool, string) {
		return replicaSets(t, "api") == 2 && replicaSets(t, "both") == 2, fmt.Sprintf("api %d both %d", replicaSets(t, "api"), replicaSets(t, "both"))
	})
	time.Sleep(4 * time.Second)
	if a, b := replicaSets(t, "api"), replicaSets(t, "both"); a != 2 || b != 2 {
		t.Fatalf("ReplicaSets api=%d both=%d after one change, want 2 and 2", a, b)
	}
	if n := replicaSets(t, "plain"); n != 1 {
		t.Fatalf("the workload that did not opt in rolled out (%d ReplicaSets)", n)
	}
	if v := restartedFor(t, "elsewhere", "deployment", "api"); v != "" {
		t.Fatal("a workload of another namespace was restarted")
	}
	if out := kubectl(t, "get", "sb", "payments", "-n", "demo", "-o", "jsonpath={.status.consumers}/{.status.lastRestartTime}"); !strings.HasPrefix(out, "2/") || len(out) < 4 {
		t.Fatalf("binding status consumers/lastRestartTime = %q, want 2 consumers (api, worker) and a time", out)
	}
	events := kubectl(t, "get", "events", "-n", "demo", "--field-selector", "reason=Restarted", "-o", "name")
	if len(strings.Fields(events)) < 3 {
		t.Fatalf("restart events: %q", events)
	}
	if metric(t, stack.MetricsURL, `keyferry_workload_restarts_total{kind="Deployment",result="restarted"}`) < 2 {
		t.Fatal("keyferry_workload_restarts_total does not count the Deployment restarts")
	}
}

// After the rollouts above, a manager restart with nothing changed touches no workload.
func TestManagerRestartRestartsNothing(t *testing.T) {
	gens := func() string {
		return kubectl(t, "get", "deployments,statefulsets", "-n", "demo", "-o",
			`jsonpath={range .items[*]}{.metadata.name}={.metadata.generation}/{.spec.template.metadata.annotations.keyferry\.dev/restarted-for} {end}`)
	}
	before := gens()
	stack.StopManager()
	if err := stack.StartManager(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second)
	if after := gens(); after != before {
		t.Fatalf("workloads changed across a manager restart:\nbefore %s\nafter  %s", before, after)
	}
}

// The local stack runs the garbage collector: an Owner binding's Secret goes with it.
func TestOwnerSecretGoesWithItsBinding(t *testing.T) {
	b := `apiVersion: keyferry.dev/v1beta1
kind: SecretBinding
metadata: {name: short-lived, namespace: demo}
spec:
  connectionRef: {name: keyway}
  vault: acme/payments
  environment: production
`
	if _, err := stack.KubectlIn(context.Background(), b, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	waitSB(t, "short-lived", "Synced")
	kubectl(t, "delete", "sb", "short-lived", "-n", "demo", "--wait=true")
	waitFor(t, 30*time.Second, "the Owner Secret garbage-collected", func() (bool, string) {
		out, err := stack.Kubectl(context.Background(), "get", "secret", "short-lived", "-n", "demo", "-o", "name")
		return err != nil && strings.Contains(err.Error(), "NotFound"), out
	})
}
