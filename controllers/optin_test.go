package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// podReading is a pod template whose container reads the given Secrets, each in one way.
type read struct {
	secret, how, key string // how: env, envFrom, volume, projected
}

func podReading(reads ...read) corev1.PodTemplateSpec {
	c := corev1.Container{Name: "app", Image: "app:1"}
	var vols []corev1.Volume
	var projected []corev1.VolumeProjection
	for i, r := range reads {
		switch r.how {
		case "env":
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("V%d", i), ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: r.secret}, Key: r.key}}})
		case "envFrom":
			c.EnvFrom = append(c.EnvFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: r.secret}}})
		case "volume":
			vols = append(vols, corev1.Volume{Name: fmt.Sprintf("v%d", i), VolumeSource: corev1.VolumeSource{
				Secret: &corev1.SecretVolumeSource{SecretName: r.secret}}})
		case "projected":
			projected = append(projected, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: r.secret},
				Items:                []corev1.KeyToPath{{Key: r.key, Path: r.key}}}})
		}
	}
	if len(projected) > 0 {
		vols = append(vols, corev1.Volume{Name: "projected", VolumeSource: corev1.VolumeSource{
			Projected: &corev1.ProjectedVolumeSource{Sources: projected}}})
	}
	labels := map[string]string{"app": "x"}
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{c}, Volumes: vols}}
}

func optedIn(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{kf.LabelRestartOnChange: "true"}}
}

func deploymentReading(ns, name string, reads ...read) *appsv1.Deployment {
	tpl := podReading(reads...)
	return &appsv1.Deployment{ObjectMeta: optedIn(ns, name), Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: tpl.Labels}, Template: tpl}}
}

func statefulSetReading(ns, name string, reads ...read) *appsv1.StatefulSet {
	tpl := podReading(reads...)
	return &appsv1.StatefulSet{ObjectMeta: optedIn(ns, name), Spec: appsv1.StatefulSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: tpl.Labels}, Template: tpl}}
}

// restartState reads a workload's generation, restart annotation and consumed record.
func restartState(t *testing.T, w client.Object) (gen int64, restartedFor, consumed string) {
	t.Helper()
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(w), w); err != nil {
		t.Fatal(err)
	}
	var tpl *corev1.PodTemplateSpec
	switch o := w.(type) {
	case *appsv1.Deployment:
		tpl = &o.Spec.Template
	case *appsv1.StatefulSet:
		tpl = &o.Spec.Template
	}
	for k, v := range w.GetLabels() {
		if strings.HasPrefix(k, kf.LabelPrefixConsumed) {
			consumed += k + "=" + v + " "
		}
	}
	return w.GetGeneration(), tpl.Annotations[kf.AnnotationRestartedFor], consumed
}

// Item 3 of the report: opting in restarts nothing. Workloads reading one, two and three
// keyferry Secrets (env, envFrom, volumes, projected), created before and after their
// Secrets' first sync, are recorded and left alone until data they read changes; then
// each is restarted once.
func TestOptingInRestartsNothingUntilDataChanges(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	mustCreate(t, cred, vc)
	// Two Secrets before the workloads exist, one after.
	var bindings []*kf.SecretBinding
	for _, name := range []string{"s1", "s2", "s3"} {
		b := bindingFor(ns, name, "keyway", "keyway")
		b.Spec.Vault = "acme/optin"
		bindings = append(bindings, b)
	}
	dev.SetSecret("acme/optin", "production", "A", "a1")
	dev.SetSecret("acme/optin", "production", "B", "b1")
	mustCreate(t, bindings[0], bindings[1])
	waitReason(t, bindings[0], kf.ReasonSynced)
	waitReason(t, bindings[1], kf.ReasonSynced)

	workloads := []client.Object{
		deploymentReading(ns, "one-env", read{"s1", "env", "A"}),
		deploymentReading(ns, "two-env", read{"s1", "env", "A"}, read{"s2", "env", "B"}),
		deploymentReading(ns, "two-mixed", read{"s1", "envFrom", ""}, read{"s2", "volume", ""}),
		deploymentReading(ns, "three", read{"s1", "env", "A"}, read{"s2", "projected", "B"}, read{"s3", "projected", "A"}),
		deploymentReading(ns, "three-all", read{"s1", "envFrom", ""}, read{"s2", "volume", ""}, read{"s3", "envFrom", ""}),
		statefulSetReading(ns, "sts-two", read{"s1", "env", "A"}, read{"s2", "envFrom", ""}),
	}
	mustCreate(t, workloads...)
	mustCreate(t, bindings[2])
	waitReason(t, bindings[2], kf.ReasonSynced)

	for _, w := range workloads {
		eventually(t, 20*time.Second, w.GetName()+" records what it reads", func() (bool, string) {
			_, _, consumed := restartState(t, w)
			return consumed != "", consumed
		})
	}
	// Past the debounce window (5s), nothing was restarted.
	time.Sleep(7 * time.Second)
	for _, w := range workloads {
		if gen, rf, consumed := restartState(t, w); gen != 1 || rf != "" {
			t.Errorf("%s was restarted though no data changed: generation %d, restarted-for %q (consumed %s)", w.GetName(), gen, rf, consumed)
		}
	}
	if t.Failed() {
		return
	}

	// B changes: exactly the workloads that read B of any Secret restart, once.
	dev.SetSecret("acme/optin", "production", "B", "b2")
	for i, b := range bindings {
		refresh(t, b, fmt.Sprint("b2-", i))
	}
	readsB := map[string]bool{"two-env": true, "two-mixed": true, "three": true, "three-all": true, "sts-two": true}
	for _, w := range workloads {
		if !readsB[w.GetName()] {
			continue
		}
		eventually(t, 20*time.Second, w.GetName()+" restarted", func() (bool, string) {
			gen, rf, _ := restartState(t, w)
			return gen == 2 && rf != "", fmt.Sprintf("generation %d", gen)
		})
	}
	time.Sleep(6 * time.Second)
	for _, w := range workloads {
		want := int64(1)
		if readsB[w.GetName()] {
			want = 2
		}
		if gen, _, _ := restartState(t, w); gen != want {
			t.Errorf("%s: generation %d, want %d", w.GetName(), gen, want)
		}
	}
}

// statusWriters are the field managers that wrote obj's status subresource.
func statusWriters(t *testing.T, obj client.Object) map[string]bool {
	t.Helper()
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatal(err)
	}
	writers := map[string]bool{}
	for _, mf := range obj.GetManagedFields() {
		if mf.Subresource == "status" {
			writers[mf.Manager] = true
		}
	}
	return writers
}

// Each status has one writer: consumers and lastRestartTime of a binding reach its status
// through the binding reconciler's own patch (the workload reconciler records the restart
// on the workload), and nothing else writes the binding's or the connection's status.
func TestBindingStatusHasOneWriter(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	mustCreate(t, cred, vc)
	b := bindingFor(ns, "writers", "keyway", "keyway")
	b.Spec.Vault = "acme/writers"
	dev.SetSecret("acme/writers", "production", "A", "a1")
	mustCreate(t, b)
	waitReason(t, b, kf.ReasonSynced)
	api, worker := deploymentReading(ns, "api", read{"writers", "env", "A"}), deploymentReading(ns, "worker", read{"writers", "envFrom", ""})
	mustCreate(t, api, worker)
	eventually(t, 20*time.Second, "status.consumers counts both workloads", func() (bool, string) {
		got := getBinding(t, b)
		return got.Status.Consumers == 2 && got.Status.LastRestartTime == nil, fmt.Sprintf("consumers %d, lastRestartTime %v", got.Status.Consumers, got.Status.LastRestartTime)
	})
	dev.SetSecret("acme/writers", "production", "A", "a2")
	refresh(t, b, "a2")
	eventually(t, 30*time.Second, "lastRestartTime after the restart", func() (bool, string) {
		got := getBinding(t, b)
		return got.Status.LastRestartTime != nil && got.Status.Consumers == 2, fmt.Sprintf("consumers %d, lastRestartTime %v", got.Status.Consumers, got.Status.LastRestartTime)
	})
	if err := k8s.Delete(context.Background(), worker); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "status.consumers follows a deleted workload", func() (bool, string) {
		got := getBinding(t, b)
		return got.Status.Consumers == 1 && got.Status.LastRestartTime != nil, fmt.Sprintf("consumers %d, lastRestartTime %v", got.Status.Consumers, got.Status.LastRestartTime)
	})
	// One field manager (the manager process) wrote each status; which reconciler may
	// write it is held by steps' TestStatusWritesGoThroughOnePatcher.
	for _, obj := range []client.Object{b, vc} {
		if w := statusWriters(t, obj); len(w) != 1 {
			t.Errorf("%T %s: status written by %v, want one writer", obj, obj.GetName(), w)
		}
	}
}
