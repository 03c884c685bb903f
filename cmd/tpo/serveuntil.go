package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// serveUntil serves hs on ln until ctx ends, then shuts it down: the
// requests in flight get grace to finish. Past it, overrun (when set) is
// called, to make them end, and they get five seconds more; then the
// connections are closed. It returns when the server has stopped.
func serveUntil(ctx context.Context, hs *http.Server, ln net.Listener, grace time.Duration, overrun func()) error {
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	err := shutdownWithin(hs, grace)
	if errors.Is(err, context.DeadlineExceeded) && overrun != nil {
		overrun()
		err = shutdownWithin(hs, 5*time.Second)
	}
	if err != nil {
		err = errors.Join(err, hs.Close())
	}
	<-served // http.ErrServerClosed
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func shutdownWithin(hs *http.Server, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return hs.Shutdown(ctx)
}
