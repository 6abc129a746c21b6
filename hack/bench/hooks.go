package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/webhook"
)

const (
	hookNamespace = "bench-hooks"
	hookSecret    = "bench-hook-secret-0123456789abcdef"
)

// runHooks measures RefreshReceivers: over p.trials changes of the vault, the time from
// the trigger until every one of the N bindings' Secrets holds the new value, by a hook
// and by annotating every binding (the path without a receiver); then the manager's CPU
// while an attacker sends p.floodRate invalid hooks a second for p.floodFor, against the
// same span idle, and the writes and pulls the flood caused.
func runHooks(p params) error {
	ctx := context.Background()
	st, stop, err := startStack(ctx, p, 1, []string{"--keyway-limit", "0"})
	if err != nil {
		return err
	}
	defer stop()
	c, err := newClient(st.Kubeconfig)
	if err != nil {
		return err
	}
	if err := createNamespace(ctx, c, hookNamespace); err != nil {
		return err
	}
	if err := createKeywayConnection(ctx, c, hookNamespace, "keyway", st.VaultURL+"/keyway"); err != nil {
		return err
	}
	for i := range p.n {
		b := binding(hookNamespace, "app-"+strconv.Itoa(i), "keyway", "env-0")
		b.Labels = map[string]string{"app": "bench"}
		if err := c.Create(ctx, b); err != nil {
			return err
		}
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hookNamespace, Name: "hook",
		Labels: map[string]string{kf.LabelCredentials: "true"}}, StringData: map[string]string{"token": hookSecret}}); err != nil {
		return err
	}
	rr := &kf.RefreshReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: hookNamespace, Name: "ci"}, Spec: kf.RefreshReceiverSpec{
		Type: kf.ReceiverTypeGenericHMAC, SecretRef: kf.ReceiverSecretReference{Name: "hook"},
		Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}}}}
	if err := c.Create(ctx, rr); err != nil {
		return err
	}
	w, err := watchReady(ctx, c)
	if err != nil {
		return err
	}
	if err := st.StartManager(); err != nil {
		return err
	}
	if err := w.wait(p.n, 5*time.Minute); err != nil {
		return err
	}
	w.Stop()
	if err := poll(time.Minute, "receiver path", func() (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(rr), rr)
		return err == nil && rr.Status.WebhookPath != "", err
	}); err != nil {
		return err
	}
	url := st.HookURL + rr.Status.WebhookPath

	var byHook, byAnnotation []time.Duration
	hookPulls, annotationPulls := 0, 0
	for i := range p.trials {
		value := fmt.Sprintf("trial-%d", i)
		before := counts(st)["keyway.pull"]
		viaHook := i%2 == 0
		took, err := untilAllHold(ctx, c, p.n, value, func() error {
			if err := setBenchValue(st.VaultURL, value); err != nil {
				return err
			}
			if viaHook {
				return sendHook(url, []byte(`{"trial":`+strconv.Itoa(i)+`}`))
			}
			return annotateAll(ctx, c, p.n, value)
		})
		if err != nil {
			return err
		}
		if viaHook {
			byHook = append(byHook, took)
			hookPulls += counts(st)["keyway.pull"] - before
		} else {
			byAnnotation = append(byAnnotation, took)
			annotationPulls += counts(st)["keyway.pull"] - before
		}
		time.Sleep(1100 * time.Millisecond) // the receiver's next round may start
	}

	pid := st.ManagerPID()
	idle := cpuOver(pid, p.floodFor, func() {})
	before := counts(st)
	writes, err := countWrites(ctx, c)
	if err != nil {
		return err
	}
	var sent, refused atomic.Int64
	flood := cpuOver(pid, p.floodFor, func() { floodInvalid(st.HookURL, rr.Status.WebhookPath, p.floodRate, p.floodFor, &sent, &refused) })
	time.Sleep(2 * time.Second)
	wrote := writes()
	pulls := counts(st)["keyway.pull"] - before["keyway.pull"]
	fmt.Fprintf(os.Stderr, "flood: %d sent, %d refused; manager CPU %.2f s idle, %.2f s flooded over %v\n", sent.Load(), refused.Load(), idle, flood, p.floodFor)
	fmt.Printf("| %d | %d | %s | %s | %.1f | %s | %s | %.1f | %.0f | %.1f%% | %.1f%% | %d | %d |\n", p.n, p.trials,
		ms(percentile(byHook, 50)), ms(percentile(byHook, 99)), float64(hookPulls)/float64(len(byHook)),
		ms(percentile(byAnnotation, 50)), ms(percentile(byAnnotation, 99)), float64(annotationPulls)/float64(len(byAnnotation)),
		float64(sent.Load())/p.floodFor.Seconds(),
		100*idle/p.floodFor.Seconds(), 100*flood/p.floodFor.Seconds(), wrote, pulls)
	return nil
}

// setBenchValue changes KEY_00 of bench/app env-0 in the dev vault.
func setBenchValue(vaultURL, value string) error {
	body, _ := json.Marshal(map[string]string{"environment": "env-0", "key": "KEY_00", "value": value})
	req, err := http.NewRequest(http.MethodPut, vaultURL+"/debug/secrets/bench/app", bytes.NewReader(body)) //nolint:noctx // a local call
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	return nil
}

func sendHook(url string, body []byte) error {
	req, err := webhook.NewRequest(context.Background(), webhook.GenericHMAC, url, body, []byte(hookSecret), time.Now())
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("hook: HTTP %d", resp.StatusCode)
	}
	return nil
}

// annotateAll asks every binding for a refresh, one merge patch each, as a script would.
func annotateAll(ctx context.Context, c client.Client, n int, value string) error {
	patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"keyferry.dev/refresh":"`+value+`"}}}`))
	return parallel(n, func(i int) error {
		b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: hookNamespace, Name: "app-" + strconv.Itoa(i)}}
		return c.Patch(ctx, b, patch)
	})
}

// untilAllHold runs trigger and returns how long until all n Secrets hold value in KEY_00.
func untilAllHold(ctx context.Context, c client.WithWatch, n int, value string, trigger func() error) (time.Duration, error) {
	list := &corev1.SecretList{}
	if err := c.List(ctx, list, client.InNamespace(hookNamespace)); err != nil {
		return 0, err
	}
	w, err := c.Watch(ctx, &corev1.SecretList{}, client.InNamespace(hookNamespace), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	start := time.Now()
	if err := trigger(); err != nil {
		return 0, err
	}
	holding := map[string]bool{}
	timeout := time.After(2 * time.Minute)
	for len(holding) < n {
		select {
		case ev := <-w.ResultChan():
			if s, ok := ev.Object.(*corev1.Secret); ok && ev.Type == watch.Modified && string(s.Data["KEY_00"]) == value {
				holding[s.Name] = true
			}
		case <-timeout:
			return 0, fmt.Errorf("%d of %d Secrets hold %s after 2m", len(holding), n, value)
		}
	}
	return time.Since(start), nil
}

// cpuOver returns the CPU seconds pid used while during ran and for at least span.
func cpuOver(pid int, span time.Duration, during func()) float64 {
	s := newSampler(pid)
	defer s.stop()
	time.Sleep(300 * time.Millisecond)
	_, start := s.now()
	t0 := time.Now()
	during()
	time.Sleep(time.Until(t0.Add(span)))
	time.Sleep(300 * time.Millisecond) // a sample after the end
	_, end := s.now()
	return end - start
}

// floodInvalid sends rate requests a second for span: half a valid path with a wrong
// signature, half unknown paths, from 32 connections.
func floodInvalid(base, path string, rate int, span time.Duration, sent, refused *atomic.Int64) {
	total := int(float64(rate) * span.Seconds())
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 32 {
				time.Sleep(time.Until(start.Add(time.Duration(i) * span / time.Duration(total))))
				target := base + path
				if i%2 == 1 {
					target = base + "/hook/" + strings.Repeat(strconv.Itoa(i%10), 64)
				}
				req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(`{"forged":true}`)) //nolint:noctx // a local flood
				if err != nil {
					continue
				}
				req.Header.Set("X-Timestamp", strconv.FormatInt(time.Now().Unix(), 10))
				req.Header.Set("X-Signature", "sha256="+strings.Repeat("ab", 32))
				resp, err := hc.Do(req)
				sent.Add(1)
				if err != nil {
					continue
				}
				_ = resp.Body.Close()
				if resp.StatusCode >= 400 {
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
}

// countWrites watches the bench namespace's bindings, receivers and Secrets; the returned
// function stops and says how many writes it saw.
func countWrites(ctx context.Context, c client.WithWatch) (func() int, error) {
	var n atomic.Int64
	var ws []watch.Interface
	for _, l := range []client.ObjectList{&kf.SecretBindingList{}, &kf.RefreshReceiverList{}, &corev1.SecretList{}} {
		if err := c.List(ctx, l, client.InNamespace(hookNamespace)); err != nil {
			return nil, err
		}
		rv := l.(interface{ GetResourceVersion() string }).GetResourceVersion()
		w, err := c.Watch(ctx, l, client.InNamespace(hookNamespace), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		if err != nil {
			return nil, err
		}
		ws = append(ws, w)
		go func() {
			for ev := range w.ResultChan() {
				// Only writes: stopping a watch ends it with an ERROR event of its own.
				o, ok := ev.Object.(client.Object)
				if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified && ev.Type != watch.Deleted) {
					continue
				}
				n.Add(1)
				fmt.Fprintf(os.Stderr, "write during the flood: %s %T %s\n", ev.Type, o, o.GetName())
			}
		}()
	}
	return func() int {
		for _, w := range ws {
			w.Stop()
		}
		return int(n.Load())
	}, nil
}

func percentile(ds []time.Duration, pct int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*pct + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
