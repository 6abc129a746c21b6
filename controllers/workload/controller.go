// Package workload restarts the opted-in Deployments, StatefulSets and DaemonSets when
// data they consume of keyferry-managed Secrets changes: controller.go runs the pass,
// consumed.go works out what a workload reads and what it read when last restarted,
// restart.go debounces and writes the restart, watches.go says what wakes it.
package workload

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/consumers"
	"github.com/keyferry/keyferry/controllers/steps"
	"github.com/keyferry/keyferry/internal/metrics"
)

// Reconciler restarts the opted-in workloads of one kind (label
// keyferry.dev/restart-on-change: "true") when, and only when, the data they consume of
// keyferry-managed Secrets changes: once per debounce window, never on a first sync or an
// operator restart.
type Reconciler struct {
	// Client reads workloads (label-selected cache) and bindings, and writes patches.
	Client client.Client
	// Secrets reads managed Secrets from the label-selected cache.
	Secrets  client.Reader
	Clock    clock.PassiveClock
	Recorder events.EventRecorder
	HMACKey  []byte
	Kind     string
	// Debounce groups changes of several Secrets into one restart.
	Debounce time.Duration

	mu      sync.Mutex
	pending map[types.NamespacedName]time.Time // first seen change, per workload
}

// Reconcile compares what the workload reads now with what it read when last (re)started.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	w := consumers.New(r.Kind)
	stage, err := steps.Fetch(ctx, r.Client, req.NamespacedName, w)
	switch {
	case err != nil:
		return ctrl.Result{}, err
	case stage == steps.Gone:
		r.settle(req.NamespacedName)
		return ctrl.Result{}, nil
	case stage != steps.Live, w.GetLabels()[kf.LabelRestartOnChange] != "true":
		return ctrl.Result{}, nil
	}
	state, err := r.consumed(ctx, w)
	if err != nil || len(state.perSecret) == 0 {
		return ctrl.Result{}, err // no managed Secret: not ours to restart
	}
	labelled, recorded := recordedConsumption(w)
	seen := byLabel(state.perSecret)
	log := ctrl.LoggerFrom(ctx).V(1)
	if !changed(recorded, seen) {
		r.settle(req.NamespacedName)
		if !maps.Equal(labelled, seen) {
			// A Secret seen for the first time (a new binding's first sync), or one no
			// longer read: record what is read now, no restart.
			log.Info("recording consumed Secrets", "secrets", len(state.perSecret))
			return ctrl.Result{}, r.patch(ctx, w, labelled, seen, "", time.Time{})
		}
		return ctrl.Result{}, nil
	}
	if held, err := r.suspended(ctx, w.GetNamespace(), state.bindings); err != nil || held != "" {
		if held != "" {
			// The binding's Secret changed while it is suspended (a hand edit): keyferry
			// restarts nothing for it; its resumption repairs the Secret or writes new
			// data, and that change brings the workload back here.
			log.Info("consumed data changed but binding is suspended: no restart", "binding", held)
		}
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	if wait := r.firstSeen(req.NamespacedName, now).Add(r.Debounce).Sub(now); wait > 0 {
		log.Info("consumed data changed; restart after the debounce window", "in", wait)
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	r.settle(req.NamespacedName)
	if err := r.patch(ctx, w, labelled, seen, state.digest, now); err != nil {
		metrics.WorkloadRestart(r.Kind, false)
		return ctrl.Result{}, err
	}
	metrics.WorkloadRestart(r.Kind, true)
	log.Info("restarted: consumed data changed", "secrets", len(state.perSecret))
	msg := fmt.Sprintf("restarted: data it reads of Secret(s) %s changed", joinSorted(state.perSecret))
	if r.Recorder != nil {
		r.Recorder.Eventf(w, nil, corev1.EventTypeNormal, "Restarted", "Restart", "%s", msg)
	}
	// The bindings' status (consumers, lastRestartTime) is theirs to write: the binding
	// reconciler reads the restart from the workload's annotation. They get an Event.
	r.tellBindings(w, state)
	return ctrl.Result{}, nil
}
