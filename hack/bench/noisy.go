package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/devvault"
)

// The noisy-neighbour mode (-noisy N, -backlog M): how long a healthy tenant's new binding
// takes to be Ready on an idle manager, while another tenant has N bindings on 20
// connections (one per 25 bindings) to a vault that accepts connections and never answers
// (half of them logins that never answer, requestTimeout 5m), and while a third tenant's M
// bindings are all due at once (their Secrets deleted in one call: each pass repairs one).
// All traffic stays on loopback.

const healthySamples = 5

type noisyResult struct {
	idle, noisy, backlog time.Duration
	backlogAll           time.Duration
	hanging              int32
	connections          int
}

func runNoisy(p params) error {
	ctx := context.Background()
	// No vendor rate limit in the dev vault: this measures the queue, not the budget.
	st, stop, err := startStack(ctx, p, max(p.e, 1), []string{"--keyway-limit", "0"})
	if err != nil {
		return err
	}
	defer stop()
	if _, err := st.StartReplica(); err != nil {
		return err
	}
	c, err := newClient(st.Kubeconfig)
	if err != nil {
		return err
	}
	var res noisyResult
	var seq atomic.Int32
	healthy := func() (time.Duration, error) {
		var times []time.Duration
		for range healthySamples {
			d, err := healthyTimeToReady(ctx, c, st.VaultURL, fmt.Sprintf("healthy-%d", seq.Add(1)))
			if err != nil {
				return 0, err
			}
			times = append(times, d)
		}
		slices.Sort(times)
		return times[len(times)/2], nil
	}
	if res.idle, err = healthy(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "idle: healthy tenant Ready in %s (median of %d)\n", res.idle, healthySamples)

	if p.noisy > 0 {
		dead, err := devvault.NewSilent()
		if err != nil {
			return err
		}
		defer dead.Close()
		res.connections = max(p.noisy/25, 1)
		if err := createHangingTenant(ctx, c, "noisy", dead.URL(), p.noisy, res.connections); err != nil {
			return err
		}
		deadline := time.Now().Add(60 * time.Second)
		for dead.Open() < int32(res.connections) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if res.noisy, err = healthy(); err != nil {
			return err
		}
		res.hanging = dead.Open()
		fmt.Fprintf(os.Stderr, "with %d hanging bindings on %d connections (%d requests hanging): healthy tenant Ready in %s\n",
			p.noisy, res.connections, res.hanging, res.noisy)
	}
	if p.backlog > 0 {
		if res.backlog, res.backlogAll, err = duringBacklog(ctx, c, st.VaultURL, p); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "with %d bindings of another namespace due at once: healthy tenant Ready in %s; the backlog took %s\n",
			p.backlog, res.backlog, res.backlogAll)
	}
	fmt.Printf("| %d | %d | %d | %.2f | %s | %s | %s | %d |\n", p.noisy, res.connections, p.backlog, res.idle.Seconds(),
		orDash(p.noisy > 0, res.noisy), orDash(p.backlog > 0, res.backlog), orDash(p.backlog > 0, res.backlogAll), res.hanging)
	return nil
}

// duringBacklog makes M bindings of namespace busy due at once, each with a fetch and
// writes: their connection's token is wrong until all of them report Unauthorized, then
// it is fixed (as a team fixing its credentials does), which queues all M together. A
// healthy binding is created right then; it returns the healthy binding's time to Ready
// and the time until the whole backlog was Ready.
func duringBacklog(ctx context.Context, c client.WithWatch, vaultURL string, p params) (healthy, all time.Duration, err error) {
	if err := createNamespace(ctx, c, "busy"); err != nil {
		return 0, 0, err
	}
	if err := createKeywayConnectionWith(ctx, c, "busy", "conn", vaultURL+"/keyway", "kw_live_wrong"); err != nil {
		return 0, 0, err
	}
	token := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "busy", Name: "token"}, token); err != nil {
		return 0, 0, err
	}
	if err := parallel(p.backlog, func(i int) error {
		return c.Create(ctx, binding("busy", fmt.Sprintf("b-%d", i), "conn", fmt.Sprintf("env-%d", i%max(p.e, 1))))
	}); err != nil {
		return 0, 0, err
	}
	var last map[string]int
	readyCount := func(reason string) func() (bool, error) {
		return func() (bool, error) {
			list := &kf.SecretBindingList{}
			if err := c.List(ctx, list, client.InNamespace("busy")); err != nil {
				return false, err
			}
			last = map[string]int{}
			for i := range list.Items {
				if r := meta.FindStatusCondition(list.Items[i].Status.Conditions, kf.ConditionReady); r != nil {
					last[r.Reason]++
				} else {
					last["(no status)"]++
				}
			}
			return last[reason] == p.backlog, nil
		}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (backlog by reason: %v)", err, last)
		}
	}()
	if err := poll(10*time.Minute, "backlog Unauthorized", readyCount(kf.ReasonUnauthorized)); err != nil {
		return 0, 0, err
	}
	token.Data = map[string][]byte{"token": []byte("kw_live_bench")}
	start := time.Now()
	if err := c.Update(ctx, token); err != nil {
		return 0, 0, err
	}
	if healthy, err = healthyTimeToReady(ctx, c, vaultURL, "healthy-backlog"); err != nil {
		return 0, 0, err
	}
	err = poll(10*time.Minute, "backlog Ready", readyCount(kf.ReasonSynced))
	return healthy, time.Since(start), err
}

// poll calls done every 200ms until it says yes.
func poll(timeout time.Duration, what string, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func orDash(ok bool, d time.Duration) string {
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f", d.Seconds())
}

// healthyTimeToReady creates a namespace with a Keyway connection and one binding and
// returns the time from the binding's creation to Ready, read through a watch.
func healthyTimeToReady(ctx context.Context, c client.WithWatch, vaultURL, ns string) (time.Duration, error) {
	if err := createNamespace(ctx, c, ns); err != nil {
		return 0, err
	}
	if err := createKeywayConnection(ctx, c, ns, "conn", vaultURL+"/keyway"); err != nil {
		return 0, err
	}
	w, err := c.Watch(ctx, &kf.SecretBindingList{}, client.InNamespace(ns))
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	start := time.Now()
	if err := c.Create(ctx, binding(ns, "app", "conn", "env-0")); err != nil {
		return 0, err
	}
	timeout := time.After(5 * time.Minute)
	for {
		select {
		case <-timeout:
			return 0, fmt.Errorf("binding in %s not Ready after 5m", ns)
		case e, ok := <-w.ResultChan():
			if !ok {
				return 0, fmt.Errorf("watch of %s closed", ns)
			}
			if b, ok := e.Object.(*kf.SecretBinding); ok && meta.IsStatusConditionTrue(b.Status.Conditions, kf.ConditionReady) {
				return time.Since(start), nil
			}
		}
	}
}

func createKeywayConnection(ctx context.Context, c client.Client, ns, name, url string) error {
	return createKeywayConnectionWith(ctx, c, ns, name, url, "kw_live_bench")
}

func createKeywayConnectionWith(ctx context.Context, c client.Client, ns, name, url, token string) error {
	if err := client.IgnoreAlreadyExists(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "token",
		Labels: map[string]string{kf.LabelCredentials: "true"}}, StringData: map[string]string{"token": token}})); err != nil {
		return err
	}
	// A budget above Keyway's documented 100 per 15 minutes: the retries of 5,000 failing
	// bindings would spend that, and this measures the queue, not the budget.
	return c.Create(ctx, &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: kf.VaultConnectionSpec{Provider: kf.ProviderKeyway, URL: url, AllowInsecureHTTP: true,
			RateLimit: &kf.RateLimit{Requests: 100000, Period: metav1.Duration{Duration: time.Minute}},
			Auth:      kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "token", Key: "token"}}}}})
}

func binding(ns, name, conn, env string) *kf.SecretBinding {
	return &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: conn}, Vault: "bench/app", Environment: env}}
}

// createHangingTenant creates n bindings, each on an environment of its own, spread over
// conns connections to url: even ones Keyway with a token (their pulls hang), odd ones
// Knowledge Stack logging in (their logins hang), all with requestTimeout 5m.
func createHangingTenant(ctx context.Context, c client.Client, ns, url string, n, conns int) error {
	if err := createNamespace(ctx, c, ns); err != nil {
		return err
	}
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "token", Labels: map[string]string{kf.LabelCredentials: "true"}},
			StringData: map[string]string{"token": "kw_live_noise"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "login", Labels: map[string]string{kf.LabelCredentials: "true"}},
			StringData: map[string]string{"username": "noise@example.com", "password": "noise"}},
	} {
		if err := c.Create(ctx, s); err != nil {
			return err
		}
	}
	timeout := &metav1.Duration{Duration: 5 * time.Minute}
	if err := parallel(conns, func(i int) error {
		spec := kf.VaultConnectionSpec{Provider: kf.ProviderKeyway, URL: url, AllowInsecureHTTP: true, RequestTimeout: timeout,
			Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "token", Key: "token"}}}}
		if i%2 == 1 {
			spec.Provider = kf.ProviderKnowledgeStack
			spec.Auth = kf.AuthSpec{Login: &kf.LoginAuth{SecretRef: kf.SecretReference{Name: "login"}}}
		}
		return c.Create(ctx, &kf.VaultConnection{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dead-" + strconv.Itoa(i)}, Spec: spec})
	}); err != nil {
		return err
	}
	return parallel(n, func(i int) error {
		b := binding(ns, fmt.Sprintf("b-%d", i), "dead-"+strconv.Itoa(i%conns), fmt.Sprintf("env-%d", i))
		if i%conns%2 == 1 {
			b.Spec.Request = &kf.RequestSpec{Path: "/v1/secrets?tenant={vault}&env={environment}", Format: kf.RequestFormatDotenv, DataPath: "content"}
		}
		return c.Create(ctx, b)
	})
}
