package vault

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// signoutTimeout bounds the sign-out of a replaced or removed client.
const signoutTimeout = 10 * time.Second

// Registry keeps one long-lived client per connection, rebuilt only when the connection's
// config changes; the replaced client signs out. A new static token alone (a rotated or
// replaced API key) is swapped into the live client: its requests in flight, its budget
// and its pause go on, so a rotation neither fails a pull nor resets the budget.
type Registry struct {
	hooks      func(connection string) Hooks
	egressDeny []netip.Prefix

	mu      sync.Mutex
	clients map[string]*registered
}

type registered struct {
	fingerprint string
	client      *Client
}

// NewRegistry returns an empty registry; hooks, when not nil, gives each connection's
// clients their hooks (metrics); egressDeny is the egress policy of every client it
// builds.
func NewRegistry(hooks func(connection string) Hooks, egressDeny []netip.Prefix) *Registry {
	return &Registry{hooks: hooks, egressDeny: egressDeny, clients: map[string]*registered{}}
}

// Client returns the client of connection id for cfg, reusing the existing one when cfg
// is unchanged.
func (r *Registry) Client(id string, cfg Config) (*Client, error) {
	cfg.EgressDeny = r.egressDeny
	fp := cfg.fingerprint()
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.clients[id]; ok && cur.fingerprint == fp {
		cur.client.SetToken(cfg.Token) // a no-op for a login (no static token)
		return cur.client, nil
	}
	var h Hooks
	if r.hooks != nil {
		h = r.hooks(id)
	}
	c, err := New(cfg, h)
	if err != nil {
		return nil, err
	}
	if old, ok := r.clients[id]; ok {
		retire(old.client)
	}
	r.clients[id] = &registered{fingerprint: fp, client: c}
	return c, nil
}

// Get returns the current client of connection id, if any.
func (r *Registry) Get(id string) (*Client, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.clients[id]
	if !ok {
		return nil, false
	}
	return cur.client, true
}

// Remove drops connection id's client: its requests in flight are canceled at once, its
// session is signed out in the background (a sign-out that hangs holds no caller).
func (r *Registry) Remove(id string) {
	r.mu.Lock()
	cur, ok := r.clients[id]
	delete(r.clients, id)
	r.mu.Unlock()
	if ok {
		retire(cur.client)
	}
}

// retire cancels c's requests now and closes it in the background.
func retire(c *Client) {
	c.cancel()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), signoutTimeout)
		defer cancel()
		c.Close(ctx)
	}()
}
