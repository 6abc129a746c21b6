package metricsauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// apiServer answers reviews as an API server would for two tokens: "reader" may get
// /metrics, "nobody" is a valid user without that right; anything else is unknown.
func apiServer(reviews *int) client.Client {
	s := runtime.NewScheme()
	_ = authnv1.AddToScheme(s)
	_ = authzv1.AddToScheme(s)
	return fake.NewClientBuilder().WithScheme(s).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(_ context.Context, _ client.WithWatch, obj client.Object, _ ...client.CreateOption) error {
			*reviews++
			switch o := obj.(type) {
			case *authnv1.TokenReview:
				if o.Spec.Token == "reader" || o.Spec.Token == "nobody" {
					o.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: o.Spec.Token}}
				}
			case *authzv1.SubjectAccessReview:
				na := o.Spec.NonResourceAttributes
				o.Status.Allowed = o.Spec.User == "reader" && na != nil && na.Path == "/metrics" && na.Verb == "get"
			}
			return nil
		},
	}).Build()
}

func TestOnlyAuthorizedTokensReadMetrics(t *testing.T) {
	var reviews int
	now := time.Unix(1000, 0)
	a := &Authorizer{Client: apiServer(&reviews), now: func() time.Time { return now }}
	h := a.Wrap(logr.Discard(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) }))
	get := func(token string) int {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for token, want := range map[string]int{"": 401, "forged": 401, "nobody": 403, "reader": 200} {
		if got := get(token); got != want {
			t.Errorf("token %q: HTTP %d, want %d", token, got, want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	r.Header.Set("Authorization", "bearer reader")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Errorf("a lower-case scheme: HTTP %d", w.Code)
	}
	before := reviews
	if get("reader") != 200 || get("nobody") != 403 || reviews != before {
		t.Errorf("decisions within %v must be reused (%d more reviews)", ttl, reviews-before)
	}
	now = now.Add(ttl)
	if get("reader") != 200 || reviews != before+2 {
		t.Errorf("an expired decision must be asked again (%d reviews)", reviews-before)
	}
	for i := range 2 * maxCached {
		a.decided[[32]byte{byte(i), byte(i >> 8)}] = decision{code: 200, at: now}
		if len(a.decided) > maxCached {
			break
		}
	}
	get("forged")
	if len(a.decided) > maxCached {
		t.Errorf("%d decisions cached, bound is %d", len(a.decided), maxCached)
	}
}
