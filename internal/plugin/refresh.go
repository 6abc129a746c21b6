package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

func newRefreshCommand(o *Options) *cobra.Command {
	var s selection
	var all, wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "refresh (BINDING... | -l SELECTOR | --connection NAME | --all)",
		Short: "Sync bindings now (the keyferry.dev/refresh annotation), and wait for the results",
		Long: `refresh sets the keyferry.dev/refresh annotation of each selected binding to a new value
(one merge patch each: never a read-modify-write that could lose a race). With --wait it
follows them until status.lastHandledRefresh says each was handled, prints each result, and
exits non-zero if any ended not Ready (or was not handled within --timeout).`,
		Example: `  kubectl keyferry refresh payments -n shop --wait
  kubectl keyferry refresh -l team=payments -n shop
  kubectl keyferry refresh --connection keyway -n shop --wait --timeout 5m
  kubectl keyferry refresh --all -A`,
		RunE: func(cmd *cobra.Command, args []string) error {
			s.names = args
			if len(args) == 0 && s.selector == "" && s.connection == "" && !all {
				return errors.New("name bindings, or select them with -l, --connection or --all")
			}
			if err := o.resolve(&s); err != nil {
				return err
			}
			return o.refresh(ctxOf(cmd), s, wait, timeout)
		},
	}
	addSelectionFlags(cmd, &s, true)
	cmd.Flags().BoolVar(&all, "all", false, "Every binding of the namespace (or of all namespaces with -A).")
	cmd.Flags().BoolVar(&wait, "wait", false, "Wait until each refresh is handled and print the results.")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "With --wait: how long to wait.")
	return cmd
}

func (o *Options) refresh(ctx context.Context, s selection, wait bool, timeout time.Duration) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	bs, err := bindings(ctx, c, s)
	if err != nil {
		return err
	}
	if len(bs) == 0 {
		return exitError{code: 1, msg: "no binding matches"}
	}
	if len(s.names) > len(bs) {
		return exitError{code: 1, msg: fmt.Sprintf("%d of the %d bindings named do not exist", len(s.names)-len(bs), len(s.names))}
	}
	value := strconv.FormatInt(o.now().UnixNano(), 10)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{kf.AnnotationRefresh: value}}})
	for i := range bs {
		if err := c.Patch(ctx, &bs[i], client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("refreshing SecretBinding %s/%s: %w", bs[i].Namespace, bs[i].Name, err)
		}
	}
	fmt.Fprintf(o.Streams.Out, "refresh %s asked of %s\n", value, plural(len(bs), "binding"))
	if !wait {
		return nil
	}
	return o.awaitRefresh(ctx, c, s, bs, value, timeout)
}

// awaitRefresh follows the bindings (one watch) until each has handled value, printing
// each result as it comes.
func (o *Options) awaitRefresh(ctx context.Context, c client.WithWatch, s selection, bs []kf.SecretBinding, value string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pending := map[types.NamespacedName]bool{}
	for _, b := range bs {
		pending[types.NamespacedName{Namespace: b.Namespace, Name: b.Name}] = true
	}
	failed, done := 0, 0
	seen := func(b *kf.SecretBinding) {
		key := types.NamespacedName{Namespace: b.Namespace, Name: b.Name}
		if !pending[key] || b.Status.LastHandledRefresh != value {
			return
		}
		delete(pending, key)
		done++
		ready := meta.FindStatusCondition(b.Status.Conditions, kf.ConditionReady)
		mark, reason, msg := "✓", "", ""
		if ready != nil {
			reason, msg = ready.Reason, ready.Message
		}
		if ready == nil || ready.Status != metav1.ConditionTrue {
			mark = "✗"
			failed++
		}
		fmt.Fprintf(o.Streams.Out, "[%d/%d] %s %s/%s  %s: %s\n", done, len(bs), mark, b.Namespace, b.Name, reason, msg)
	}
	for len(pending) > 0 {
		list := &kf.SecretBindingList{}
		opts, err := s.listOptions()
		if err != nil {
			return err
		}
		if err := c.List(ctx, list, opts...); err != nil {
			return o.waitEnded(err, pending, failed)
		}
		for i := range list.Items {
			seen(&list.Items[i])
		}
		if len(pending) == 0 {
			break
		}
		w, err := c.Watch(ctx, &kf.SecretBindingList{}, append(opts, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})...)
		if err != nil {
			return o.waitEnded(err, pending, failed)
		}
		for e := range w.ResultChan() {
			if e.Type == watch.Error {
				break
			}
			if b, ok := e.Object.(*kf.SecretBinding); ok {
				seen(b)
			}
			if len(pending) == 0 {
				break
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return o.waitEnded(ctx.Err(), pending, failed)
		}
	}
	if failed > 0 {
		return exitError{code: 1, msg: fmt.Sprintf("%d of %s not Ready", failed, plural(len(bs), "binding"))}
	}
	return nil
}

func (o *Options) waitEnded(err error, pending map[types.NamespacedName]bool, failed int) error {
	for key := range pending {
		fmt.Fprintf(o.Streams.Out, "  … %s: refresh not handled yet\n", key)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return exitError{code: 1, msg: fmt.Sprintf("%d bindings did not handle the refresh in time; %d not Ready", len(pending), failed)}
	}
	return err
}
