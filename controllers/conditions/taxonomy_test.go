package conditions

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/vault"
)

// reasonConstants reads the string constants named Reason* declared in a Go file, so a
// reason added there is seen here without anyone updating a list.
func reasonConstants(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if !strings.HasPrefix(name.Name, "Reason") || i >= len(vs.Values) {
				continue
			}
			if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				out[name.Name] = v
			}
		}
		return true
	})
	return out
}

// keyferryOwnReasons are the condition reasons that come from keyferry itself rather than
// from a provider's answer.
var keyferryOwnReasons = []string{kf.ReasonSynced, kf.ReasonAuthenticated, kf.ReasonProgressing,
	kf.ReasonCredentialsNotFound, kf.ReasonConnectionNotReady, kf.ReasonTargetConflict, kf.ReasonTooLarge,
	kf.ReasonConflict, kf.ReasonBindingsNotReady, kf.ReasonSourceNotFound,
	kf.ReasonCredentialValid, kf.ReasonCredentialExpiring, kf.ReasonCredentialTooOld, kf.ReasonRotating, kf.ReasonRotationFailed,
	kf.ReasonListening, kf.ReasonListenerDisabled}

func TestEveryReasonIsMappedOnBothSides(t *testing.T) {
	vaultConsts := reasonConstants(t, filepath.Join("..", "..", "internal", "vault", "errors.go"))
	condConsts := reasonConstants(t, filepath.Join("..", "..", "api", "v1beta1", "conditions.go"))
	if len(vaultConsts) == 0 || len(condConsts) == 0 {
		t.Fatal("no reason constants found: did the files move?")
	}
	listed := vault.Reasons()
	mappedTo := map[string]bool{}
	for name, v := range vaultConsts {
		r := vault.Reason(v)
		if !slices.Contains(listed, r) {
			t.Errorf("vault.%s is missing from vault.Reasons()", name)
		}
		m, ok := VaultReasons[r]
		if !ok {
			t.Errorf("vault.%s (%q) has no entry in VaultReasons", name, v)
			continue
		}
		mappedTo[m.Reason] = true
	}
	if len(listed) != len(vaultConsts) {
		t.Errorf("vault.Reasons() lists %d reasons, errors.go declares %d", len(listed), len(vaultConsts))
	}
	condValues := map[string]bool{}
	for _, v := range condConsts {
		condValues[v] = true
	}
	for r, m := range VaultReasons {
		if !condValues[m.Reason] {
			t.Errorf("VaultReasons maps %q to %q, which api/v1beta1 does not declare", r, m.Reason)
		}
	}
	for name, v := range condConsts {
		if !mappedTo[v] && !slices.Contains(keyferryOwnReasons, v) {
			t.Errorf("kf.%s (%q) is neither a provider reason in VaultReasons nor one of keyferry's own", name, v)
		}
	}
}

func TestVaultErrorsBecomeConditionErrors(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in     *vault.Error
		reason string
		class  ErrorClass
	}{
		{&vault.Error{Reason: vault.ReasonUnauthorized, Op: "pull", StatusCode: 401}, kf.ReasonUnauthorized, ClassStalled},
		{&vault.Error{Reason: vault.ReasonForbidden, Op: "pull", StatusCode: 403}, kf.ReasonForbidden, ClassStalled},
		{&vault.Error{Reason: vault.ReasonInvalidConfig, Op: "configure"}, kf.ReasonInvalidSpec, ClassStalled},
		{&vault.Error{Reason: vault.ReasonRateLimited, Op: "pull", StatusCode: 429, RetryAt: at}, kf.ReasonRateLimited, ClassWaiting},
		{&vault.Error{Reason: vault.ReasonProviderUnavailable, Op: "pull", StatusCode: 502}, kf.ReasonProviderUnavailable, ClassTransient},
		{&vault.Error{Reason: vault.ReasonProviderUnavailable, Op: "pull", StatusCode: 503, RetryAt: at, RetryAfter: 30 * time.Second},
			kf.ReasonProviderUnavailable, ClassWaiting},
		{&vault.Error{Reason: vault.ReasonInvalidResponse, Op: "pull", StatusCode: 200}, kf.ReasonInvalidResponse, ClassTransient},
	} {
		ce, ok := AsConditionError(tc.in)
		if !ok || ce.Reason != tc.reason || ce.Class != tc.class || !ce.RetryAt.Equal(tc.in.RetryAt) || ce.Message != tc.in.Error() {
			t.Errorf("%v -> %+v, want %s/%s", tc.in, ce, tc.reason, tc.class)
		}
	}
	if _, ok := AsConditionError(errors.New("connection client pending")); ok {
		t.Error("an error not about the object must not become a condition")
	}
}
