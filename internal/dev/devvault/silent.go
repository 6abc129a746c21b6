package devvault

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// Silent is a vault that accepts TCP connections and never answers: what a firewall that
// drops packets after the handshake, or a wedged server, looks like to a client. It
// listens on loopback and counts connections opened and closed (a client that gives up
// closes its end). For tests and benchmarks of a tenant whose vault hangs.
type Silent struct {
	l              net.Listener
	opened, closed atomic.Int32
	mu             sync.Mutex
	conns          []net.Conn
}

// NewSilent starts a silent vault on a free loopback port.
func NewSilent() (*Silent, error) {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Silent{l: l}
	go s.accept()
	return s, nil
}

func (s *Silent) accept() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.opened.Add(1)
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					s.closed.Add(1)
					return
				}
			}
		}()
	}
}

// URL is the vault's plain-HTTP address.
func (s *Silent) URL() string { return "http://" + s.l.Addr().String() }

// Opened counts the connections accepted so far.
func (s *Silent) Opened() int32 { return s.opened.Load() }

// Open counts the connections still open (not closed by the client).
func (s *Silent) Open() int32 { return s.opened.Load() - s.closed.Load() }

// Close stops listening and closes every connection.
func (s *Silent) Close() {
	_ = s.l.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
}
