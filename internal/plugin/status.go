package plugin

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// Report is what `status` shows; -o json|yaml prints it as it is.
type Report struct {
	Connections int              `json:"connections"`
	Bindings    int              `json:"bindings"`
	Ready       int              `json:"ready"`
	Failing     int              `json:"failing"`
	Tree        []ConnectionNode `json:"tree"`
	// Receivers are the RefreshReceivers of the namespaces shown.
	Receivers []ReceiverNode `json:"receivers,omitempty"`
}

// ConnectionNode is a connection and the selected bindings that use it.
type ConnectionNode struct {
	Kind      string        `json:"kind"`
	Namespace string        `json:"namespace,omitempty"`
	Name      string        `json:"name"`
	Found     bool          `json:"found"`
	Ready     string        `json:"ready"`
	Reason    string        `json:"reason,omitempty"`
	Message   string        `json:"message,omitempty"`
	Suspended bool          `json:"suspended,omitempty"`
	Bindings  []BindingNode `json:"bindings"`
}

// BindingNode is one binding, its Secret and the workloads that read it.
type BindingNode struct {
	Namespace   string       `json:"namespace"`
	Name        string       `json:"name"`
	Ready       string       `json:"ready"`
	Reason      string       `json:"reason,omitempty"`
	Message     string       `json:"message,omitempty"`
	Environment string       `json:"environment"`
	Keys        int32        `json:"keys"`
	LastSync    *metav1.Time `json:"lastSyncTime,omitempty"`
	NextSync    *metav1.Time `json:"nextSyncTime,omitempty"`
	RetryAfter  *metav1.Time `json:"retryAfter,omitempty"`
	Suspended   bool         `json:"suspended,omitempty"`
	Secret      string       `json:"secret"`
	Workloads   []string     `json:"workloads,omitempty"`
}

func (b BindingNode) failing() bool { return b.Ready != "True" }

func (c ConnectionNode) failing() bool {
	return c.Ready != "True" || slices.ContainsFunc(c.Bindings, BindingNode.failing)
}

func newStatusCommand(o *Options) *cobra.Command {
	var s selection
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Connections, their bindings, the Secrets they write and the workloads that read them",
		Long: `status shows a tree: connection, then its bindings (Ready, reason, environment, keys,
last sync, next sync or retry), then each binding's Secret and the workloads that read it.
Failing connections and bindings come first; the counts are at the top.`,
		Example: `  kubectl keyferry status -A
  kubectl keyferry status -n shop -l team=payments -o wide
  kubectl keyferry status -A --connection shared -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.resolve(&s); err != nil {
				return err
			}
			r, err := o.report(cmd, s)
			if err != nil {
				return err
			}
			switch output {
			case "json", "yaml":
				return encode(o.Streams.Out, output, r)
			case "", "wide":
				writeTree(o.Streams.Out, r, o.now(), output == "wide", o.color())
				return nil
			}
			return fmt.Errorf("--output %q: want wide, json or yaml", output)
		},
	}
	addSelectionFlags(cmd, &s, true)
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: wide, json or yaml.")
	return cmd
}

// addSelectionFlags adds -A, -l and --connection.
func addSelectionFlags(cmd *cobra.Command, s *selection, withAll bool) {
	if withAll {
		cmd.Flags().BoolVarP(&s.all, "all-namespaces", "A", false, "All namespaces.")
	}
	cmd.Flags().StringVarP(&s.selector, "selector", "l", "", "Label selector of the bindings (e.g. team=payments).")
	cmd.Flags().StringVar(&s.connection, "connection", "", "Only bindings using the connection of this name (VaultConnection or ClusterVaultConnection).")
}

// resolve fills the selection's namespace from the flags and kubeconfig.
func (o *Options) resolve(s *selection) error {
	if s.all {
		return nil
	}
	ns, err := o.namespace()
	s.namespace = ns
	return err
}

// report gathers the tree.
func (o *Options) report(cmd *cobra.Command, s selection) (*Report, error) {
	ctx := ctxOf(cmd)
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	bs, err := bindings(ctx, c, s)
	if err != nil {
		return nil, err
	}
	var namespaces []string
	for _, b := range bs {
		if !slices.Contains(namespaces, b.Namespace) {
			namespaces = append(namespaces, b.Namespace)
		}
	}
	readers, err := workloadsReading(ctx, c, namespaces)
	if err != nil {
		return nil, err
	}
	r := &Report{}
	byConn := map[string]*ConnectionNode{}
	var order []string
	for i := range bs {
		b := &bs[i]
		ref := b.Spec.ConnectionRef
		ns := b.Namespace
		if ref.GetKind() == kf.ConnectionKindCluster {
			ns = ""
		}
		key := string(ref.GetKind()) + "/" + ns + "/" + ref.Name
		node := byConn[key]
		if node == nil {
			node = &ConnectionNode{Kind: string(ref.GetKind()), Namespace: ns, Name: ref.Name, Ready: "Unknown"}
			conn, err := connectionOf(ctx, c, b.Namespace, ref)
			if err != nil {
				return nil, err
			}
			if conn != nil {
				node.Found, node.Suspended = true, conn.ConnectionSpec().Suspend
				if cond := meta.FindStatusCondition(conn.ConnectionStatus().Conditions, kf.ConditionReady); cond != nil {
					node.Ready, node.Reason, node.Message = string(cond.Status), cond.Reason, cond.Message
				}
			} else {
				node.Ready, node.Reason, node.Message = "False", "NotFound", "the connection does not exist"
			}
			byConn[key] = node
			order = append(order, key)
		}
		_, env, more := b.SourceNames()
		if more > 0 {
			env += fmt.Sprintf(" +%d", more)
		}
		bn := BindingNode{Namespace: b.Namespace, Name: b.Name, Ready: "Unknown", Environment: env,
			Keys: b.Status.SyncedKeys, LastSync: b.Status.LastSyncTime, NextSync: b.Status.NextSyncTime,
			RetryAfter: b.Status.RetryAfter, Suspended: b.Spec.Suspend, Secret: b.GetTargetName(), Workloads: readers[targetKey(b)]}
		if cond := meta.FindStatusCondition(b.Status.Conditions, kf.ConditionReady); cond != nil {
			bn.Ready, bn.Reason, bn.Message = string(cond.Status), cond.Reason, cond.Message
		}
		if bn.failing() {
			r.Failing++
		} else {
			r.Ready++
		}
		node.Bindings = append(node.Bindings, bn)
	}
	for _, key := range order {
		node := byConn[key]
		// Failing first, then by name.
		slices.SortStableFunc(node.Bindings, func(a, b BindingNode) int { return boolOrder(a.failing(), b.failing()) })
		r.Tree = append(r.Tree, *node)
	}
	slices.SortStableFunc(r.Tree, func(a, b ConnectionNode) int { return boolOrder(a.failing(), b.failing()) })
	r.Connections, r.Bindings = len(r.Tree), len(bs)
	rrs, err := receivers(ctx, c, s.namespace)
	if err != nil {
		return nil, err
	}
	for i := range rrs {
		r.Receivers = append(r.Receivers, receiverNode(&rrs[i]))
	}
	slices.SortFunc(r.Receivers, func(a, b ReceiverNode) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return r, nil
}

func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// writeTree prints the report as a tree.
func writeTree(w io.Writer, r *Report, now time.Time, wide, color bool) {
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return "\x1b[" + code + "m" + s + "\x1b[0m"
	}
	mark := func(ready string) string {
		switch ready {
		case "True":
			return paint("32", "✓")
		case "False":
			return paint("31", "✗")
		}
		return paint("33", "…")
	}
	fmt.Fprintf(w, "%s, %s: %d Ready, %d not Ready\n", plural(r.Connections, "connection"), plural(r.Bindings, "binding"), r.Ready, r.Failing)
	for _, c := range r.Tree {
		name := c.Name
		if c.Namespace != "" {
			name = c.Namespace + "/" + c.Name
		}
		line := fmt.Sprintf("\n%s %s %s  %s", mark(c.Ready), c.Kind, name, orDash(c.Reason))
		if c.Suspended {
			line += "  SUSPENDED"
		}
		if wide && c.Message != "" {
			line += "  " + c.Message
		}
		fmt.Fprintln(w, line)
		for i, b := range c.Bindings {
			branch, stem := "├─", "│  "
			if i == len(c.Bindings)-1 {
				branch, stem = "└─", "   "
			}
			fmt.Fprintf(w, "%s %s SecretBinding %s/%s  %s  %s  %s  %s\n", branch, mark(b.Ready), b.Namespace, b.Name,
				orDash(b.Reason), b.Environment, plural(int(b.Keys), "key"), timing(b, now))
			if b.Ready != "True" && b.Message != "" || wide && b.Message != "" {
				fmt.Fprintf(w, "%s   %s\n", stem, b.Message)
			}
			readers := "no workload reads it"
			if len(b.Workloads) > 0 {
				readers = "read by " + strings.Join(b.Workloads, ", ")
			}
			fmt.Fprintf(w, "%s   └─ Secret %s: %s\n", stem, b.Secret, readers)
		}
	}
	if len(r.Receivers) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Receivers {
			line := mark(n.Ready) + " " + describeReceiver(n, now)
			if wide && n.WebhookPath != "" {
				line += "  " + n.WebhookPath
			}
			if (n.Ready != "True" || wide) && n.Message != "" {
				line += "\n   " + n.Message
			}
			fmt.Fprintln(w, line)
		}
	}
}

// timing says when the binding last synced and when it syncs or retries next.
func timing(b BindingNode, now time.Time) string {
	var parts []string
	if b.LastSync != nil {
		parts = append(parts, "synced "+ago(now, b.LastSync.Time))
	} else {
		parts = append(parts, "never synced")
	}
	switch {
	case b.Suspended:
		parts = append(parts, "SUSPENDED")
	case b.RetryAfter != nil && b.RetryAfter.After(now):
		parts = append(parts, "retry "+in(now, b.RetryAfter.Time))
	case b.NextSync != nil:
		parts = append(parts, "next "+in(now, b.NextSync.Time))
	}
	return strings.Join(parts, ", ")
}

func ago(now, t time.Time) string { return short(now.Sub(t)) + " ago" }

func in(now, t time.Time) string {
	if !t.After(now) {
		return "now"
	}
	return "in " + short(t.Sub(now))
}

// short is a duration as kubectl shows ages: 45s, 12m, 3h, 2d.
func short(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
