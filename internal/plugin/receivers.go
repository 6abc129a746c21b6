package plugin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/webhook"
)

// ReceiverNode is one RefreshReceiver as status and why show it.
type ReceiverNode struct {
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	Type        string            `json:"type"`
	Ready       string            `json:"ready"`
	Reason      string            `json:"reason,omitempty"`
	Message     string            `json:"message,omitempty"`
	Suspended   bool              `json:"suspended,omitempty"`
	WebhookPath string            `json:"webhookPath,omitempty"`
	LastHandled *kf.ReceiverRound `json:"lastHandled,omitempty"`
}

// receivers lists the receivers of namespace ("" for all). A cluster without the kind
// (an older keyferry) or a user who may not list them sees none.
func receivers(ctx context.Context, c client.Client, namespace string) ([]kf.RefreshReceiver, error) {
	list := &kf.RefreshReceiverList{}
	var opts []client.ListOption
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	if err := c.List(ctx, list, opts...); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return nil, nil
		}
		return nil, err
	}
	return list.Items, nil
}

func receiverNode(rr *kf.RefreshReceiver) ReceiverNode {
	n := ReceiverNode{Namespace: rr.Namespace, Name: rr.Name, Type: string(rr.Spec.Type), Ready: "Unknown",
		Suspended: rr.Spec.Suspend, WebhookPath: rr.Status.WebhookPath, LastHandled: rr.Status.LastHandled}
	if cond := meta.FindStatusCondition(rr.Status.Conditions, kf.ConditionReady); cond != nil {
		n.Ready, n.Reason, n.Message = string(cond.Status), cond.Reason, cond.Message
	}
	return n
}

// selects says whether rr's selector picks b (same namespace only).
func selects(rr *kf.RefreshReceiver, b *kf.SecretBinding) bool {
	if rr.Namespace != b.Namespace {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(&rr.Spec.Selector)
	return err == nil && sel.Matches(labels.Set(b.Labels))
}

// describeReceiver is one line: mark-less, for status and why alike.
func describeReceiver(n ReceiverNode, now time.Time) string {
	line := fmt.Sprintf("RefreshReceiver %s/%s  %s  %s", n.Namespace, n.Name, orDash(n.Reason), n.Type)
	if n.Suspended {
		line += "  SUSPENDED"
	}
	if n.LastHandled != nil {
		line += fmt.Sprintf("  last hook %s (%s refreshed)", ago(now, n.LastHandled.Time.Time), strconv.Itoa(int(n.LastHandled.Refreshed)))
	} else {
		line += "  no hook yet"
	}
	return line
}

// writeReceiversOf is why's section: the receivers whose hooks refresh b.
func writeReceiversOf(w io.Writer, rrs []kf.RefreshReceiver, b *kf.SecretBinding, now time.Time) {
	var lines []string
	for i := range rrs {
		if selects(&rrs[i], b) {
			n := receiverNode(&rrs[i])
			line := "  " + describeReceiver(n, now)
			if n.Ready != "True" && n.Message != "" {
				line += "\n    " + n.Message
			}
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "\nRefreshed by hooks to")
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

func newHookCommand(o *Options) *cobra.Command {
	var secretFile, kind, data, caFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "hook URL --secret-file FILE",
		Short: "Send a correctly signed test call to a RefreshReceiver",
		Long: `hook POSTs to URL (the listener's address and the receiver's status.webhookPath) signed
as the receiver's type signs: generic-hmac (X-Timestamp and X-Signature over
"<timestamp>.<body>"), github (X-Hub-Signature-256, a fresh X-GitHub-Delivery, event push)
or token (Authorization: Bearer). The secret is read from a file, never from the command
line (shell history, process lists). It prints the answer's status: 202 means the bindings
are being refreshed; 401 and 404 say no more, by design.`,
		Example: `  kubectl keyferry hook https://hooks.example.com$(kubectl get rr ci -n shop -o jsonpath='{.status.webhookPath}') \
      --secret-file ./hook-secret --type generic-hmac`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			secret, err := os.ReadFile(secretFile)
			if err != nil {
				return fmt.Errorf("--secret-file: %w", err)
			}
			// A trailing newline from `echo > file` is not part of the secret.
			secret = bytes.TrimRight(secret, "\r\n")
			hc := &http.Client{Timeout: timeout}
			if caFile != "" {
				pem, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--cacert: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return fmt.Errorf("--cacert %s holds no PEM certificate", caFile)
				}
				hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
			}
			// The wall clock, not o.now: the listener checks the timestamp against its own.
			req, err := webhook.NewRequest(ctxOf(cmd), webhook.Kind(kind), args[0], []byte(data), secret, time.Now())
			if err != nil {
				return err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			defer func() { _ = resp.Body.Close() }()
			fmt.Fprintf(o.Streams.Out, "%s\n", resp.Status)
			if resp.StatusCode/100 != 2 {
				return exitError{code: 1, msg: hookAdvice(resp.StatusCode)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "File holding the receiver's shared secret.")
	cmd.Flags().StringVar(&kind, "type", string(kf.ReceiverTypeGenericHMAC), "The receiver's type: generic-hmac, github or token.")
	cmd.Flags().StringVar(&data, "data", `{"source":"kubectl-keyferry"}`, "The body sent.")
	cmd.Flags().StringVar(&caFile, "cacert", "", "PEM certificates to trust for the listener (default: the system's).")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "How long to wait for the answer.")
	_ = cmd.MarkFlagRequired("secret-file")
	return cmd
}

func hookAdvice(code int) string {
	switch code {
	case http.StatusNotFound:
		return "404: no receiver listens at this path (check status.webhookPath: it changes when the secret does)"
	case http.StatusUnauthorized:
		return "401: the signature was refused (wrong secret or --type, a clock more than 5 minutes off, or a replay)"
	case http.StatusTooManyRequests:
		return "429: over the listener's rate limit; try again in a second"
	}
	return fmt.Sprintf("%d: the hook was not accepted", code)
}
