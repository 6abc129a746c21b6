package plugin

import (
	"context"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

const whyEvents = 5

func newWhyCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "why BINDING",
		Short: "Why a binding is in its state, and what to do",
		Long: `why tells one binding's story: its conditions and message, its connection's state
(authenticated, token expiry, paused until), recent Events of both, whether its Secret was
changed by hand, what it waits for, and what to do next for its reason.`,
		Example: `  kubectl keyferry why payments -n shop`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return why(ctxOf(cmd), c, o.Streams.Out, types.NamespacedName{Namespace: ns, Name: args[0]}, o.now())
		},
	}
}

func why(ctx context.Context, c client.Client, w io.Writer, key types.NamespacedName, now time.Time) error {
	b := &kf.SecretBinding{}
	if err := c.Get(ctx, key, b); err != nil {
		return err
	}
	ready := meta.FindStatusCondition(b.Status.Conditions, kf.ConditionReady)
	vault, env, more := b.SourceNames()
	if more > 0 {
		env += fmt.Sprintf(" +%d", more)
	}
	fmt.Fprintf(w, "SecretBinding %s/%s (%s %s, %s)\n", b.Namespace, b.Name, vault, env, b.GetRefreshPolicy())
	switch {
	case b.Spec.Suspend:
		fmt.Fprintln(w, "  SUSPENDED: keyferry does not touch it until spec.suspend is false.")
	case b.Status.ObservedGeneration != b.Generation:
		fmt.Fprintf(w, "  generation %d not handled yet (last handled: %d)\n", b.Generation, b.Status.ObservedGeneration)
	}
	for _, t := range []string{kf.ConditionReady, kf.ConditionReconciling, kf.ConditionStalled} {
		if cond := meta.FindStatusCondition(b.Status.Conditions, t); cond != nil {
			fmt.Fprintf(w, "  %s=%s  %s, %s: %s\n", cond.Type, cond.Status, cond.Reason, ago(now, cond.LastTransitionTime.Time), cond.Message)
		}
	}
	if ready == nil {
		fmt.Fprintln(w, "  no status yet: keyferry has not handled it (is the operator running?)")
	}
	fmt.Fprintf(w, "  %s, %s\n", plural(int(b.Status.SyncedKeys), "key"), timing(BindingNode{LastSync: b.Status.LastSyncTime, NextSync: b.Status.NextSyncTime,
		RetryAfter: b.Status.RetryAfter, Suspended: b.Spec.Suspend}, now))
	if v := b.Annotations[kf.AnnotationRefresh]; v != "" && v != b.Status.LastHandledRefresh {
		fmt.Fprintf(w, "  refresh %q asked, not handled yet\n", v)
	}

	conn, err := connectionOf(ctx, c, b.Namespace, b.Spec.ConnectionRef)
	if err != nil {
		return err
	}
	ref := b.Spec.ConnectionRef
	fmt.Fprintf(w, "\n%s %s\n", ref.GetKind(), ref.Name)
	if conn == nil {
		fmt.Fprintln(w, "  does not exist")
	} else {
		writeConnection(w, conn, now)
	}

	fmt.Fprintf(w, "\nSecret %s\n", b.GetTargetName())
	if err := writeSecret(ctx, c, w, b); err != nil {
		return err
	}

	writeRender(w, b, ready)

	rrs, err := receivers(ctx, c, b.Namespace)
	if err != nil {
		return err
	}
	writeReceiversOf(w, rrs, b, now)

	fmt.Fprintln(w, "\nWaiting for")
	fmt.Fprintf(w, "  %s\n", waitingFor(b, ready, now))

	fmt.Fprintln(w, "\nRecent events")
	evs, err := events(ctx, c, b, "SecretBinding", whyEvents)
	if err != nil {
		return err
	}
	if conn != nil {
		more, err := events(ctx, c, conn, string(ref.GetKind()), whyEvents)
		if err != nil {
			return err
		}
		evs = append(evs, more...)
		slices.SortFunc(evs, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b).Time) })
	}
	if len(evs) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, e := range evs {
		fmt.Fprintf(w, "  %s  %s  %s %s  %s\n", ago(now, eventTime(e).Time), e.Type, e.InvolvedObject.Kind, e.Reason, e.Message)
	}

	reason := kf.ReasonProgressing
	if ready != nil {
		reason = ready.Reason
	}
	fmt.Fprintf(w, "\nWhat to do (%s)\n  %s\n", reason, adviceFor(reason))
	return nil
}

func writeConnection(w io.Writer, conn kf.Connection, now time.Time) {
	st := conn.ConnectionStatus()
	if conn.ConnectionSpec().Suspend {
		fmt.Fprintln(w, "  SUSPENDED: no request goes through it")
	}
	if cond := meta.FindStatusCondition(st.Conditions, kf.ConditionReady); cond != nil {
		fmt.Fprintf(w, "  Ready=%s  %s: %s\n", cond.Status, cond.Reason, cond.Message)
	} else {
		fmt.Fprintln(w, "  no status yet")
	}
	if st.AuthenticatedTime != nil {
		fmt.Fprintf(w, "  authenticated %s\n", ago(now, st.AuthenticatedTime.Time))
	}
	if st.TokenExpiresAt != nil {
		fmt.Fprintf(w, "  token expires %s\n", in(now, st.TokenExpiresAt.Time))
	}
	if st.RetryAfter != nil && st.RetryAfter.After(now) {
		fmt.Fprintf(w, "  paused until %s (%s): no request leaves before\n", st.RetryAfter.UTC().Format(time.RFC3339), in(now, st.RetryAfter.Time))
	}
	writeCredential(w, st, now)
}

// writeCredential shows the credential's life and its rotation (never a key: ids and
// the prefix the provider shows).
func writeCredential(w io.Writer, st *kf.VaultConnectionStatus, now time.Time) {
	if cond := meta.FindStatusCondition(st.Conditions, kf.ConditionCredentialsHealthy); cond != nil {
		fmt.Fprintf(w, "  CredentialsHealthy=%s  %s: %s\n", cond.Status, cond.Reason, cond.Message)
	}
	if st.CredentialExpiresAt != nil {
		word := "lapses"
		if !st.CredentialExpiresAt.After(now) {
			word = "LAPSED"
		}
		fmt.Fprintf(w, "  credential %s %s (%s)\n", word, in(now, st.CredentialExpiresAt.Time), st.CredentialExpiresAt.UTC().Format(time.RFC3339))
	}
	if st.CredentialChangedAt != nil {
		fmt.Fprintf(w, "  credential changed %s\n", ago(now, st.CredentialChangedAt.Time))
	}
	r := st.Rotation
	if r == nil {
		return
	}
	key := r.CurrentKeyID
	if r.CurrentKeyPrefix != "" {
		key += " (" + r.CurrentKeyPrefix + "...)"
	}
	fmt.Fprintf(w, "  rotation %s, key %s", r.Phase, key)
	if r.NextRotation != nil {
		fmt.Fprintf(w, ", next %s", in(now, r.NextRotation.Time))
	}
	if r.LastRotationTime != nil {
		fmt.Fprintf(w, ", last %s", ago(now, r.LastRotationTime.Time))
	}
	fmt.Fprintln(w)
	if r.PreviousKeyID != "" {
		fmt.Fprintf(w, "  previous key %s still to be revoked\n", r.PreviousKeyID)
	}
	if r.LastError != "" {
		fmt.Fprintf(w, "  last rotation error: %s\n", r.LastError)
	}
}

// writeSecret says whether the Secret exists, how many keys it has, and whether someone
// other than keyferry wrote its data since (from managedFields: never a value).
func writeSecret(ctx context.Context, c client.Client, w io.Writer, b *kf.SecretBinding) error {
	s := &corev1.Secret{}
	err := c.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: b.GetTargetName()}, s)
	switch {
	case apierrors.IsNotFound(err):
		fmt.Fprintln(w, "  missing: keyferry writes it at the next sync")
		return nil
	case apierrors.IsForbidden(err):
		fmt.Fprintln(w, "  (you may not read Secrets here)")
		return nil
	case err != nil:
		return err
	}
	fmt.Fprintf(w, "  %s, type %s\n", plural(len(s.Data), "key"), s.Type)
	if by := editedBy(s.ManagedFields); by != "" {
		fmt.Fprintf(w, "  data changed by %q since keyferry wrote it: drifted (keyferry restores it unless refreshPolicy is CreatedOnce)\n", by)
	} else {
		fmt.Fprintln(w, "  data as keyferry wrote it")
	}
	return nil
}

// editedBy returns the last field manager other than keyferry that holds a data key.
func editedBy(fields []metav1.ManagedFieldsEntry) string {
	var who string
	var at time.Time
	for _, f := range fields {
		if f.Manager == kf.FieldManager || strings.HasPrefix(f.Manager, kf.FieldManager+"-") || f.FieldsV1 == nil {
			continue
		}
		if raw := f.FieldsV1.GetRawString(); !strings.Contains(raw, `"f:data"`) && !strings.Contains(raw, `"f:stringData"`) {
			continue
		}
		if f.Time != nil && f.Time.After(at) {
			who, at = f.Manager, f.Time.Time
		} else if who == "" {
			who = f.Manager
		}
	}
	return who
}

// waitingFor says what the binding waits for now.
func waitingFor(b *kf.SecretBinding, ready *metav1.Condition, now time.Time) string {
	rec := meta.FindStatusCondition(b.Status.Conditions, kf.ConditionReconciling)
	stalled := meta.FindStatusCondition(b.Status.Conditions, kf.ConditionStalled)
	switch {
	case b.Spec.Suspend:
		return "spec.suspend to be false"
	case ready == nil:
		return "its first sync"
	case b.Status.RetryAfter != nil && b.Status.RetryAfter.After(now):
		return "the provider's pause to end, " + in(now, b.Status.RetryAfter.Time)
	case stalled != nil && stalled.Status == metav1.ConditionTrue:
		return "a change of spec, credentials or target (keyferry still retries with backoff)"
	case rec != nil && rec.Status == metav1.ConditionTrue:
		return rec.Message
	case b.Status.NextSyncTime != nil:
		return "the next refresh, " + in(now, b.Status.NextSyncTime.Time)
	}
	return "a change (refreshPolicy " + string(b.GetRefreshPolicy()) + ": no scheduled refresh)"
}

// renderFailure reads a render failure's message: which template (key or ConfigMap item)
// and, when a function failed, which.
var renderFailure = regexp.MustCompile(`^template(?: for key)? "([^"]+)" (does not parse|failed): (?:.*? at <([^>]*)>: )?(?:error calling (\w+): )?`)

// writeRender shows the render step of a binding that has one to speak of: its sources,
// decoding, templates (inline and from ConfigMaps) and type check, and what failed.
func writeRender(w io.Writer, b *kf.SecretBinding, ready *metav1.Condition) {
	t := b.Spec.Target
	if len(b.Spec.Sources) == 0 && t.Template == nil && len(t.TemplateFrom) == 0 && b.Spec.DecodingStrategy == "" &&
		(t.Type == "" || t.Type == corev1.SecretTypeOpaque) {
		return
	}
	fmt.Fprintln(w, "\nRender")
	if len(b.Spec.Sources) > 0 {
		counts := map[string]int32{}
		for _, s := range b.Status.Sources {
			counts[s.Vault+"/"+s.Environment] = s.Keys
		}
		i := 0
		line := func(vault, env string, dec kf.DecodingStrategy, prefix string) {
			i++
			extra := ""
			if dec != "" && dec != kf.DecodingNone {
				extra += ", decoding " + string(dec)
			}
			if prefix != "" {
				extra += ", prefix " + prefix
			}
			fmt.Fprintf(w, "  source %d: %s %s%s (%s)\n", i, vault, env, extra, plural(int(counts[vault+"/"+env]), "key"))
		}
		if b.Spec.Vault != "" {
			line(b.Spec.Vault, b.Spec.Environment, b.Spec.DecodingStrategy, "")
		}
		for _, s := range b.Spec.Sources {
			line(s.Vault, s.Environment, s.DecodingStrategy, s.Prefix)
		}
	} else if d := b.Spec.DecodingStrategy; d != "" && d != kf.DecodingNone {
		fmt.Fprintf(w, "  decoding %s\n", d)
	}
	if t.Template != nil && len(t.Template.Data) > 0 {
		fmt.Fprintf(w, "  templates: %s\n", strings.Join(slices.Sorted(maps.Keys(t.Template.Data)), ", "))
	}
	for _, f := range t.TemplateFrom {
		var items []string
		for _, it := range f.ConfigMap.Items {
			items = append(items, it.Key+" ("+string(it.TemplateAs)+")")
		}
		fmt.Fprintf(w, "  templates from ConfigMap %s: %s\n", f.ConfigMap.Name, strings.Join(items, ", "))
	}
	if t.Type != "" && t.Type != corev1.SecretTypeOpaque {
		line := fmt.Sprintf("  checked as %s", t.Type)
		if b.Status.CertificateNotAfter != nil {
			line += ", certificate expires " + b.Status.CertificateNotAfter.UTC().Format(time.RFC3339)
		}
		fmt.Fprintln(w, line)
	}
	if ready == nil || ready.Status == metav1.ConditionTrue {
		return
	}
	if m := renderFailure.FindStringSubmatch(ready.Message); m != nil {
		failed := fmt.Sprintf("  FAILED: template %q %s", m[1], m[2])
		if m[4] != "" {
			failed += fmt.Sprintf(", in function %s", m[4])
		}
		if m[3] != "" {
			failed += fmt.Sprintf(" (at <%s>)", m[3])
		}
		fmt.Fprintln(w, failed)
	} else if strings.Contains(ready.Message, " Secret: key ") {
		fmt.Fprintln(w, "  FAILED: the "+string(t.Type)+" check")
	}
}
