package plugin

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// CRDVersions is what check-upgrade reads of one CRD.
type CRDVersions struct {
	Name       string   `json:"name"`
	Kind       string   `json:"kind"`
	Served     []string `json:"served"`
	Deprecated []string `json:"deprecated,omitempty"`
	Storage    string   `json:"storage"`
	// Stored is status.storedVersions: every version an object may still be stored at.
	Stored []string `json:"stored"`
}

// pending says objects may still be stored at a version other than the storage one.
func (c CRDVersions) pending() []string {
	return slices.DeleteFunc(slices.Clone(c.Stored), func(v string) bool { return v == c.Storage })
}

// OldWriter is a field manager that last wrote objects at a deprecated version.
type OldWriter struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Manager    string   `json:"manager"`
	Objects    []string `json:"objects"`
}

func newCheckUpgradeCommand(o *Options) *cobra.Command {
	var s selection
	cmd := &cobra.Command{
		Use:   "check-upgrade",
		Short: "Whether objects are still stored, or still written, at an old API version",
		Long: `check-upgrade reads keyferry's CRDs and says, for each, the versions served (deprecated
ones marked), the storage version and the versions objects may still be stored at
(status.storedVersions). The manager moves stored objects to the storage version when it
starts and every 10 minutes; until then a release that stops serving the old version
cannot be installed.
It also lists who last wrote objects at a deprecated version (from their managedFields:
GitOps tools or scripts applying old manifests), so they can move before it goes.

Exit code 0: nothing is stored at a version other than the storage one; 1: something is.`,
		Example: `  kubectl keyferry check-upgrade -A`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.resolve(&s); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			crds, err := crdVersions(ctx, c)
			if err != nil {
				return err
			}
			writers, denied := oldWriters(ctx, c, crds, s)
			return o.printUpgradeCheck(crds, writers, denied)
		},
	}
	cmd.Flags().BoolVarP(&s.all, "all-namespaces", "A", false, "look for old writers in every namespace")
	return cmd
}

func crdVersions(ctx context.Context, c client.Client) ([]CRDVersions, error) {
	var out []CRDVersions
	for _, def := range kf.CRDs {
		name := def.Name
		crd := &apiextensionsv1.CustomResourceDefinition{}
		err := c.Get(ctx, types.NamespacedName{Name: name}, crd)
		if apierrors.IsNotFound(err) {
			continue // a kind this cluster's keyferry does not have yet
		}
		if apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("reading CRD %s needs get on customresourcedefinitions (ask a cluster admin to run this): %w", name, err)
		}
		if err != nil {
			return nil, fmt.Errorf("reading CRD %s: %w", name, err)
		}
		v := CRDVersions{Name: name, Kind: def.Kind, Stored: crd.Status.StoredVersions}
		for _, ver := range crd.Spec.Versions {
			if !ver.Served {
				continue
			}
			v.Served = append(v.Served, ver.Name)
			if ver.Deprecated {
				v.Deprecated = append(v.Deprecated, ver.Name)
			}
			if ver.Storage {
				v.Storage = ver.Name
			}
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no keyferry CRD is installed")
	}
	return out, nil
}

// oldWriters lists, per kind, the managers whose latest write of an object was at a
// deprecated version. Kinds the user may not list are named in denied.
func oldWriters(ctx context.Context, c client.Client, crds []CRDVersions, s selection) ([]OldWriter, []string) {
	var out []OldWriter
	var denied []string
	for _, crd := range crds {
		if len(crd.Deprecated) == 0 {
			continue
		}
		kind := crd.Kind
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(kf.GroupVersion.WithKind(kind + "List"))
		var opts []client.ListOption
		if !s.all && !strings.HasPrefix(kind, "Cluster") {
			opts = append(opts, client.InNamespace(s.namespace))
		}
		if err := c.List(ctx, list, opts...); err != nil {
			denied = append(denied, kind)
			continue
		}
		byWriter := map[[2]string][]string{}
		for _, obj := range list.Items {
			for _, mf := range obj.ManagedFields {
				gv := strings.TrimPrefix(mf.APIVersion, kf.GroupVersion.Group+"/")
				if slices.Contains(crd.Deprecated, gv) {
					name := obj.Name
					if obj.Namespace != "" {
						name = obj.Namespace + "/" + name
					}
					byWriter[[2]string{gv, mf.Manager}] = append(byWriter[[2]string{gv, mf.Manager}], name)
				}
			}
		}
		for k, objs := range byWriter {
			sort.Strings(objs)
			out = append(out, OldWriter{Kind: kind, APIVersion: kf.GroupVersion.Group + "/" + k[0], Manager: k[1], Objects: slices.Compact(objs)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Kind+a.Manager+a.APIVersion < b.Kind+b.Manager+b.APIVersion
	})
	return out, denied
}

func (o *Options) printUpgradeCheck(crds []CRDVersions, writers []OldWriter, denied []string) error {
	w := tabwriter.NewWriter(o.Streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CRD\tSERVED\tSTORAGE\tSTORED AT\tSTATE")
	var pending []string
	for _, c := range crds {
		served := make([]string, len(c.Served))
		for i, v := range c.Served {
			served[i] = v
			if slices.Contains(c.Deprecated, v) {
				served[i] += " (deprecated)"
			}
		}
		state := "ok"
		if p := c.pending(); len(p) > 0 {
			state = "objects may be stored at " + strings.Join(p, ", ") + ": the manager migrates them (at start, then every 10 min)"
			pending = append(pending, c.Name)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Name, strings.Join(served, ", "), c.Storage, strings.Join(c.Stored, ", "), state)
	}
	_ = w.Flush()
	if len(writers) > 0 {
		fmt.Fprintln(o.Streams.Out, "\nLast written at a deprecated version (move these manifests and tools to "+kf.GroupVersion.String()+"):")
		for _, wr := range writers {
			shown := wr.Objects[:min(len(wr.Objects), 5)]
			more := ""
			if len(wr.Objects) > len(shown) {
				more = fmt.Sprintf(" and %d more", len(wr.Objects)-len(shown))
			}
			fmt.Fprintf(o.Streams.Out, "  %s by %q at %s: %d (%s%s)\n", wr.Kind, wr.Manager, wr.APIVersion, len(wr.Objects), strings.Join(shown, ", "), more)
		}
	}
	if len(denied) > 0 {
		fmt.Fprintf(o.Streams.Out, "\nCould not list %s: their writers are not checked.\n", strings.Join(denied, ", "))
	}
	if len(pending) > 0 {
		return exitError{code: 1, msg: fmt.Sprintf("%d CRDs may hold objects stored at an older version; a release that stops serving it cannot be installed until the manager has migrated them", len(pending))}
	}
	return nil
}
